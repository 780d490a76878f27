"""`load_dataset`: one entry point that turns a name or a path into a Dataset."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from resnetlab.data.archive import ARCHIVE_SUFFIXES, is_archive
from resnetlab.data.arrays import Dataset
from resnetlab.data.cache import resolve_cache_dir
from resnetlab.data.cifar import OFFICIAL_FILENAMES, RELEASES, load_cifar
from resnetlab.data.folder import load_image_archive, load_image_folder
from resnetlab.data.messages import reporting, say
from resnetlab.data.synthetic import synthetic_dataset
from resnetlab.errors import DataError

DATA_ENV = "RESNETLAB_DATA"
DEFAULT_SOURCE = "cifar10"
NAMED_SOURCES = (*RELEASES, "synthetic")


def is_path_source(source: str) -> bool:
    """Whether a data source names a file or folder, not one of the named sources (cifar10, synthetic...)."""
    return bool(source) and source.strip().lower() not in NAMED_SOURCES


def check_source_exists(source: str) -> None:
    """Refuse a path source that is not there, before anything is loaded or written."""
    if is_path_source(source) and not Path(source).expanduser().exists():
        raise DataError(f"data source not found: {Path(source).expanduser()} (give a folder, an archive "
                        f"({', '.join(ARCHIVE_SUFFIXES)}) or one of {', '.join(NAMED_SOURCES)})")


def load_dataset(
    source: str | os.PathLike | None,
    *,
    cache_dir: str | Path | None = None,
    image_size: int = 32,
    resize: bool = True,
    download: bool = True,
    num_workers: int | None = None,
    synthetic_size: tuple[int, int] = (2048, 512),
    num_classes: int = 10,
    report: Callable[[str], None] | None = None,
) -> Dataset:
    """Load a dataset by name or path.

    Args:
        source: "cifar10" or "cifar100" (official release, cached, downloaded when missing), "synthetic", a
            folder laid out as `<root>/{train,test}/<class>/<image>`, an archive (.tar, .tar.gz, .tgz, .tar.xz,
            .zip) holding such a folder, or a local copy of an official tarball. None means $RESNETLAB_DATA,
            else "cifar10". The names win over same-named folders; write "./cifar10" for a folder.
        cache_dir: where downloads and decoded arrays are kept (default $RESNETLAB_CACHE, else
            ~/.cache/resnetlab).
        image_size: side length images are resized to (bilinear) when they differ.
        resize: False refuses image-folder images of another size instead of resizing them.
        download: whether a missing official release may be downloaded.
        num_workers: decoding threads (default: the CPUs available).
        synthetic_size: (train, test) image counts of "synthetic".
        num_classes: number of classes of "synthetic"; other sources have their own.
        report: receives one line per stage (found in the cache, or decoded and cached); a decoding progress
            bar is drawn on a terminal while it is set.
    """
    with reporting(report):
        return _load(source, cache_dir, image_size, resize, download, num_workers, synthetic_size, num_classes)


def _load(source: str | os.PathLike | None, cache_dir: str | Path | None, image_size: int, resize: bool,
          download: bool, num_workers: int | None, synthetic_size: tuple[int, int], num_classes: int) -> Dataset:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise DataError(f"image size must be a positive integer, got {image_size!r}")
    if source is None:
        source = os.environ.get(DATA_ENV) or DEFAULT_SOURCE
    source = os.fspath(source)
    cache = resolve_cache_dir(cache_dir)
    name = source.strip().lower()
    if name == "synthetic":
        say(f"data: synthetic: {synthetic_size[0]:,} training and {synthetic_size[1]:,} test images of random "
            "pixels (no files read; for trying the commands, not for accuracy)")
        return synthetic_dataset(synthetic_size, num_classes=num_classes, image_size=image_size)
    if name in RELEASES:
        return load_cifar(name, cache, image_size=image_size, download=download, num_workers=num_workers)
    check_source_exists(source)
    path = Path(source).expanduser()
    if path.is_dir():
        return load_image_folder(path, cache, image_size, num_workers, resize)
    if path.name in OFFICIAL_FILENAMES:
        return load_cifar(
            OFFICIAL_FILENAMES[path.name], cache, image_size=image_size, num_workers=num_workers, archive=path
        )
    if is_archive(path):
        return load_image_archive(path, cache, image_size, num_workers, resize)
    raise DataError(f"{path} is neither a folder nor a supported archive ({', '.join(ARCHIVE_SUFFIXES)})")
