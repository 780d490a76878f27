"""Image-folder datasets, as a directory or inside an archive: `<root>/{train,test}/<class>/<image>`.

The class names are the sorted sub-folder names of train/, and their positions are the labels; test/ must
hold the same classes. `<root>` is the top of the directory or archive, or the single folder one level down
(archives usually wrap their content in one, e.g. `cifar10-jpeg/train/...`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np

from resnetlab.data import cache
from resnetlab.data.archive import read_members
from resnetlab.data.arrays import Dataset, ImageArrays
from resnetlab.data.decode import decode_images, is_image_name
from resnetlab.errors import DataError

SPLITS = ("train", "test")
_LAYOUT = "expected <root>/train/<class>/<image> and <root>/test/<class>/<image>"


def load_image_folder(path: Path, cache_dir: Path, image_size: int = 32, num_workers: int | None = None,
                      resize: bool = True) -> Dataset:
    """Load a directory of class folders, decoding only when the cache has no entry for this exact listing."""
    root = directory_root(path)
    files: dict[str, Path] = {}
    folders: set[str] = set()
    listing: list[tuple[str, int, int]] = []
    for split in SPLITS:
        _walk(root, split, files, folders, listing)
    key = f"folder-{cache.listing_digest(listing)[:24]}-{image_size}px" + ("" if resize else "-strict")

    def build() -> tuple[ImageArrays, ImageArrays, list[str]]:
        return _build_splits(files, folders, str(root), lambda rel: str(root / rel), image_size, num_workers,
                             resize)

    train, test, classes = cache.cached(cache_dir, key, build, source=str(path))
    return Dataset(train=train, test=test, classes=classes, name=f"folder:{path.resolve()}")


def load_image_archive(path: Path, cache_dir: Path, image_size: int = 32, num_workers: int | None = None,
                       resize: bool = True) -> Dataset:
    """Load class folders from a .tar/.tar.gz/.tgz/.tar.xz/.zip, reading members straight into memory.

    Nothing is extracted to disk, and unsafe members (absolute paths, `..`, links, devices) are refused.
    The cache key is the archive's sha256, remembered by (path, size, mtime) to skip re-hashing.
    """
    key = f"archive-{cache.file_sha256(path, cache_dir)[:24]}-{image_size}px" + ("" if resize else "-strict")

    def build() -> tuple[ImageArrays, ImageArrays, list[str]]:
        members, member_folders = read_members(path, _wanted)
        prefix = _archive_prefix(path, [n.split("/") for n in [*members, *member_folders]])
        start = f"{prefix}/" if prefix else ""
        files = {name[len(start) :]: data for name, data in members.items() if name.startswith(start)}
        folders = {name[len(start) :] for name in member_folders if name.startswith(start) and name != prefix}

        def display(rel: str) -> str:
            return f"{path}:{prefix}/{rel}" if prefix else f"{path}:{rel}"

        where = f"{path}:{prefix}" if prefix else str(path)
        return _build_splits(files, folders, where, display, image_size, num_workers, resize)

    train, test, classes = cache.cached(cache_dir, key, build, source=str(path))
    return Dataset(train=train, test=test, classes=classes, name=f"folder:{path.resolve()}")


def hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _wanted(parts: tuple[str, ...]) -> bool:
    return is_image_name(parts[-1]) and not any(hidden(p) for p in parts)


def directory_root(path: Path) -> Path:
    """The folder holding train/ and test/: `path` itself or its single dataset folder one level down."""
    if (path / "train").is_dir():
        root = path
    else:
        candidates = sorted(d for d in path.iterdir() if d.is_dir() and not hidden(d.name) and (d / "train").is_dir())
        if not candidates:
            raise DataError(f"no train/ folder in {path} or one level down ({_LAYOUT})")
        if len(candidates) > 1:
            names = ", ".join(d.name for d in candidates)
            raise DataError(f"{path} holds several datasets ({names}); point to one of them")
        root = candidates[0]
    if not (root / "test").is_dir():
        raise DataError(f"{root} has a train/ folder but no test/ folder ({_LAYOUT})")
    return root


def _walk(
    root: Path, split: str, files: dict[str, Path], folders: set[str], listing: list[tuple[str, int, int]]
) -> None:
    """Collect image files and folders under root/split, keyed by '/'-joined paths relative to root.

    Folders enter the listing too, so that adding an empty class folder changes the cache key."""
    for dirpath, dirnames, filenames in os.walk(root / split, followlinks=True):
        dirnames[:] = [d for d in dirnames if not hidden(d)]
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        folders.add(rel_dir)
        listing.append((f"{rel_dir}/", 0, 0))
        for name in filenames:
            if hidden(name) or not is_image_name(name):
                continue
            rel = f"{rel_dir}/{name}"
            st = os.stat(os.path.join(dirpath, name))
            files[rel] = root / rel
            listing.append((rel, st.st_size, st.st_mtime_ns))


def _archive_prefix(archive: Path, names: Iterable[list[str]]) -> str:
    """The folder inside the archive that holds train/ and test/: '' for the top, else its name."""
    found: dict[str, set[str]] = {}
    for parts in names:
        for depth in (0, 1):
            if len(parts) > depth and parts[depth] in SPLITS:
                found.setdefault("/".join(parts[:depth]), set()).add(parts[depth])
    roots = sorted(p for p, splits in found.items() if "train" in splits)
    if not roots:
        raise DataError(f"no train/ folder in {archive} at the top or one level down ({_LAYOUT})")
    if len(roots) > 1:
        raise DataError(f"{archive} holds several datasets ({', '.join(r or '.' for r in roots)}); keep one")
    if "test" not in found[roots[0]]:
        raise DataError(f"{archive} has a train/ folder but no test/ folder ({_LAYOUT})")
    return roots[0]


def _build_splits(
    files: Mapping[str, Path | bytes],
    folders: set[str],
    where: str,
    display: Callable[[str], str],
    image_size: int,
    num_workers: int | None,
    resize: bool = True,
) -> tuple[ImageArrays, ImageArrays, list[str]]:
    """Check the class folders of both splits, then decode each split in (class, file name) order."""
    classes, grouped = group_by_class(files, folders, where, display)
    splits = []
    for split in SPLITS:
        items = [(display(rel), files[rel]) for rel, _ in grouped[split]]
        labels = [label for _, label in grouped[split]]
        images = decode_images(items, image_size, num_workers, resize, desc=f"decoding {split}")
        splits.append(ImageArrays(images, np.asarray(labels, dtype=np.int64)))
    return splits[0], splits[1], classes


def group_by_class(files: Iterable[str], folders: set[str], where: str, display: Callable[[str], str]
                   ) -> tuple[list[str], dict[str, list[tuple[str, int]]]]:
    """(sorted class names, {split: [(relative path, label)] in (class, file name) order}), after checking that
    train/ has at least two class folders, test/ the same ones, and none of them is empty."""
    by_split: dict[str, dict[str, list[str]]] = {split: {} for split in SPLITS}
    for folder in folders:
        parts = folder.split("/")
        if len(parts) >= 2 and parts[0] in by_split:
            by_split[parts[0]].setdefault(parts[1], [])
    for rel in files:
        parts = rel.split("/")
        if len(parts) >= 3 and parts[0] in by_split:
            by_split[parts[0]].setdefault(parts[1], []).append(rel)
    classes = sorted(by_split["train"])
    if not classes:
        raise DataError(f"{where}/train has no class folders ({_LAYOUT})")
    if len(classes) < 2:
        raise DataError(f"{where}/train has one class folder ({classes[0]}); a classifier needs at least 2, one "
                        "folder per class")
    only_train = sorted(set(classes) - set(by_split["test"]))
    only_test = sorted(set(by_split["test"]) - set(classes))
    if only_train or only_test:
        raise DataError(
            f"train and test classes differ in {where}: only in train: {', '.join(only_train) or '-'}; "
            f"only in test: {', '.join(only_test) or '-'}"
        )
    grouped: dict[str, list[tuple[str, int]]] = {}
    for split in SPLITS:
        grouped[split] = []
        for label, name in enumerate(classes):
            rels = sorted(by_split[split][name])
            if not rels:
                raise DataError(f"class folder {display(f'{split}/{name}')} has no images")
            grouped[split].extend((rel, label) for rel in rels)
    return classes, grouped
