"""The on-disk cache: decoded splits as .npy files keyed by a fingerprint of their source.

Decoding 60,000 JPEGs takes seconds; reading two arrays back takes a fraction of one. Every file is written
to a temporary name and moved into place, so an interrupted run never leaves a half-written entry, and an
entry that fails to load (truncated, wrong shape) is rebuilt with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from resnetlab.data.arrays import ImageArrays
from resnetlab.data.messages import one_line, say
from resnetlab.errors import DataError
from resnetlab.files import atomic_path, atomic_write_text

# Bump when decoding changes, so that old entries are not mistaken for new ones.
CACHE_VERSION = 1
_HASHES_FILE = "file-hashes.json"
_CHUNK = 1 << 20


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: the argument, else $RESNETLAB_CACHE, else ~/.cache/resnetlab."""
    if cache_dir is None:
        cache_dir = os.environ.get("RESNETLAB_CACHE") or Path.home() / ".cache" / "resnetlab"
    return Path(cache_dir).expanduser()


def ensure_dir(path: Path) -> Path:
    """Create `path` (and parents) or raise DataError naming it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create cache folder {path}: {one_line(err.strerror or err)}") from err
    return path


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks so that large archives do not fill memory."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path, cache_dir: Path) -> str:
    """sha256 of a file, remembered by (path, size, mtime) so that an unchanged archive is hashed once."""
    stat = path.stat()
    entry_key = str(path.resolve())
    memo_path = cache_dir / _HASHES_FILE
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    if not isinstance(memo, dict):
        memo = {}
    entry = memo.get(entry_key)
    if isinstance(entry, dict) and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
        return str(entry["sha256"])
    digest = file_digest(path)
    memo[entry_key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    try:
        ensure_dir(cache_dir)
        atomic_write_text(memo_path, json.dumps(memo, indent=1))
    except (OSError, DataError):
        pass  # the memo only saves time; the digest is right either way
    return digest


def listing_digest(entries: list[tuple[str, int, int]]) -> str:
    """sha256 of a sorted (relative path, size, mtime_ns) listing: changes whenever a file is added, removed or
    touched, without reading any image."""
    digest = hashlib.sha256()
    for rel, size, mtime_ns in sorted(entries):
        digest.update(f"{rel}\0{size}\0{mtime_ns}\n".encode())
    return digest.hexdigest()


def entry_dir(cache_dir: Path, key: str) -> Path:
    """Folder of one cache entry."""
    return cache_dir / "arrays" / f"{key}-v{CACHE_VERSION}"


def load_entry(cache_dir: Path, key: str) -> tuple[ImageArrays, ImageArrays, list[str]] | None:
    """The cached (train, test, classes) for `key`, or None when absent; a corrupt entry warns and gives None."""
    folder = entry_dir(cache_dir, key)
    meta_path = folder / "meta.json"
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        classes = [str(c) for c in meta["classes"]]
        splits = []
        for split in ("train", "test"):
            images = np.load(folder / f"{split}_images.npy", allow_pickle=False)
            labels = np.load(folder / f"{split}_labels.npy", allow_pickle=False)
            expected = tuple(meta[f"{split}_shape"])
            if images.shape != expected or labels.shape != expected[:1]:
                raise ValueError(f"{split} arrays have shapes {images.shape}, {labels.shape}; meta says {expected}")
            if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
                raise ValueError(f"{split} labels outside 0..{len(classes) - 1}")
            splits.append(ImageArrays(images, labels))
    except (OSError, ValueError, KeyError, TypeError, EOFError, DataError) as err:
        warnings.warn(f"cache entry {folder} is corrupt ({one_line(err)}); rebuilding it", RuntimeWarning, stacklevel=3)
        return None
    return splits[0], splits[1], classes


def save_entry(cache_dir: Path, key: str, train: ImageArrays, test: ImageArrays, classes: list[str]) -> None:
    """Write an entry; meta.json goes last, so an entry without it was never finished. Failures only warn."""
    folder = entry_dir(cache_dir, key)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "meta.json").unlink(missing_ok=True)
        for split, arrays in (("train", train), ("test", test)):
            for field in ("images", "labels"):
                with atomic_path(folder / f"{split}_{field}.npy") as temporary:
                    _save_npy(temporary, getattr(arrays, field))
        meta = {"classes": classes, "train_shape": list(train.images.shape), "test_shape": list(test.images.shape)}
        atomic_write_text(folder / "meta.json", json.dumps(meta, indent=1))
    except OSError as err:
        warnings.warn(f"could not write cache entry {folder}: {one_line(err)}", RuntimeWarning, stacklevel=3)


def cached(
    cache_dir: Path, key: str, build: Callable[[], tuple[ImageArrays, ImageArrays, list[str]]], source: str = "",
    prepare: Callable[[], object] | None = None,
) -> tuple[ImageArrays, ImageArrays, list[str]]:
    """Load the entry for `key`, or build it with `build()` and save it; says which of the two happened.
    ``prepare``: on a miss, what must come before decoding (a download), run before decoding is announced."""
    what = f"data: {source}: " if source else "data: "
    started = time.perf_counter()
    hit = load_entry(cache_dir, key)
    if hit is not None:
        say(f"{what}{len(hit[0]):,} training and {len(hit[1]):,} test images read from the cache "
            f"{entry_dir(cache_dir, key)} in {time.perf_counter() - started:.1f} s")
        return hit
    if prepare is not None:
        prepare()
    say(f"{what}first load: reading and decoding the images once (later loads read them from the cache)")
    train, test, classes = build()
    save_entry(cache_dir, key, train, test, classes)
    say(f"{what}{len(train):,} training and {len(test):,} test images decoded in {time.perf_counter() - started:.0f} s"
        f", cached in {entry_dir(cache_dir, key)}")
    return train, test, classes


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)
