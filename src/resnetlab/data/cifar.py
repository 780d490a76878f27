"""The official CIFAR-10 and CIFAR-100 releases ("python version"): download, verify, extract, parse.

The base URL can be replaced (argument `url` or $RESNETLAB_CIFAR_URL), e.g. by a mirror, a file:// folder or
a loopback server in tests. A copy of the tarball placed in the cache folder is used without downloading.
"""

from __future__ import annotations

import functools
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from resnetlab.data import cache
from resnetlab.data.archive import extract_tar
from resnetlab.data.arrays import Dataset, ImageArrays
from resnetlab.data.decode import resize_images
from resnetlab.data.download import download as fetch
from resnetlab.data.messages import one_line
from resnetlab.errors import DataError

DEFAULT_BASE_URL = "https://www.cs.toronto.edu/~kriz/"
URL_ENV = "RESNETLAB_CIFAR_URL"
DATA_ENV = "RESNETLAB_DATA"  # the default source when no --data is given (sources.py)


@dataclass(frozen=True)
class Release:
    """Where one official release lives and how its pickled batches are named."""

    filename: str
    md5: str
    folder: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    labels_key: str
    names_key: str


RELEASES = {
    "cifar10": Release(
        filename="cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_file="test_batch",
        meta_file="batches.meta",
        labels_key="labels",
        names_key="label_names",
    ),
    "cifar100": Release(
        filename="cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        folder="cifar-100-python",
        train_files=("train",),
        test_file="test",
        meta_file="meta",
        labels_key="fine_labels",
        names_key="fine_label_names",
    ),
}
OFFICIAL_FILENAMES = {release.filename: name for name, release in RELEASES.items()}


def base_url(url: str | None = None) -> str:
    """The folder URL the releases are fetched from: the argument, else $RESNETLAB_CIFAR_URL, else Toronto."""
    return url or os.environ.get(URL_ENV) or DEFAULT_BASE_URL


def load_cifar(
    name: str,
    cache_dir: Path,
    *,
    image_size: int = 32,
    download: bool = True,
    num_workers: int | None = None,
    url: str | None = None,
    md5: str | None = None,
    archive: Path | None = None,
) -> Dataset:
    """Load "cifar10" or "cifar100" from the array cache, else from the tarball (downloaded when missing).

    Args:
        url: base URL to download from (see `base_url`).
        md5: expected MD5 of the tarball, replacing the official one (for tests and private mirrors).
        archive: a local copy of the official tarball to use instead of the cache folder's.
    """
    release = RELEASES[name]
    md5 = md5 or release.md5
    key = f"{name}-{md5[:12]}-{image_size}px"

    @functools.cache
    def tarball() -> Path:
        """The checked tarball (downloaded when missing); ``cached`` asks for it before it announces decoding."""
        if archive is not None:
            official = f"{base_url(url).rstrip('/')}/{release.filename}"
            return _check_md5(archive, md5, "this is not the official release; download it again from "
                              f"{official}, or give an image folder instead")
        return _tarball(release, cache.ensure_dir(cache_dir), base_url(url), md5, download)

    def build() -> tuple[ImageArrays, ImageArrays, list[str]]:
        train, test, classes = read_release(tarball(), release, cache_dir)
        if image_size != 32:
            train = ImageArrays(resize_images(train.images, image_size, num_workers), train.labels)
            test = ImageArrays(resize_images(test.images, image_size, num_workers), test.labels)
        return train, test, classes

    train, test, classes = cache.cached(cache_dir, key, build, source=str(archive or name), prepare=tarball)
    return Dataset(train=train, test=test, classes=classes, name=name)


def read_release(tarball: Path, release: Release, cache_dir: Path) -> tuple[ImageArrays, ImageArrays, list[str]]:
    """Parse a tarball whose MD5 has been checked; it is extracted to a temporary folder removed afterwards,
    so a failure leaves nothing half-extracted."""
    with tempfile.TemporaryDirectory(dir=cache.ensure_dir(cache_dir), prefix=".extract-") as tmp:
        extract_tar(tarball, Path(tmp))
        folder = Path(tmp) / release.folder
        if not folder.is_dir():
            raise DataError(f"{tarball} has no {release.folder}/ folder; is it the official python release?")
        meta = _unpickle(folder / release.meta_file)
        classes = [n.decode() if isinstance(n, bytes) else str(n) for n in _field(meta, release.names_key, tarball)]
        parts = [_read_batch(folder / f, release.labels_key, tarball) for f in release.train_files]
        train = ImageArrays(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]))
        test = _read_batch(folder / release.test_file, release.labels_key, tarball)
    for split, arrays in (("train", train), ("test", test)):
        if len(arrays) and (arrays.labels.min() < 0 or arrays.labels.max() >= len(classes)):
            raise DataError(f"{tarball}: {split} labels fall outside the {len(classes)} classes")
    return train, test, classes


def _tarball(release: Release, cache_dir: Path, base: str, md5: str, download: bool) -> Path:
    dest = cache_dir / release.filename
    if dest.exists():
        return _check_md5(dest, md5, "delete it and retry")
    if not download:
        raise DataError(f"{dest} is missing and downloading is turned off; place the official tarball there")
    try:
        return fetch(base.rstrip("/") + "/" + release.filename, dest, md5)
    except DataError as error:
        if "cannot download" not in str(error):
            raise
        raise DataError(f"{error}. Offline? Use a local copy: --data PATH (an image folder, an archive of one, or "
                        f"the official {release.filename}), or set ${DATA_ENV} to it") from None


def _check_md5(path: Path, md5: str, way_forward: str) -> Path:
    if not path.is_file():
        raise DataError(f"official CIFAR tarball not found: {path}")
    actual = cache.file_digest(path, "md5")
    if actual != md5:
        raise DataError(f"checksum mismatch for {path}: expected md5 {md5}, got {actual}; {way_forward}")
    return path


def _unpickle(path: Path) -> dict:
    # The official batches are Python 2 pickles; encoding="bytes" is how their documentation says to read
    # them (keys come back as bytes). Unpickling can run code, so this is only ever called on files just
    # extracted from a tarball whose MD5 matched the expected one.
    try:
        with open(path, "rb") as f:
            data = pickle.load(f, encoding="bytes")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as err:
        raise DataError(f"cannot read CIFAR batch {path.name}: {one_line(err)}") from err
    if not isinstance(data, dict):
        raise DataError(f"CIFAR batch {path.name} is a {type(data).__name__}, expected a dict")
    return data


def _field(batch: dict, key: str, source: Path) -> object:
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    raise DataError(f"{source}: a CIFAR batch has no {key!r} entry")


def _read_batch(path: Path, labels_key: str, source: Path) -> ImageArrays:
    batch = _unpickle(path)
    data = np.asarray(_field(batch, "data", source))
    labels = np.asarray(_field(batch, labels_key, source), dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (len(data),):
        raise DataError(f"{source}: batch {path.name} holds {data.dtype} {data.shape} data and {labels.shape} labels")
    # Rows are 1024 red, 1024 green, 1024 blue values, each a row-major 32x32 plane.
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return ImageArrays(images, labels)
