"""Which data path a dataset takes, and the streaming path's splits.

The rule (``choose_pipeline``), for ``pipeline="auto"``:
1. CIFAR releases, "synthetic" and archives stay in memory (an archive cannot be read at random cheaply;
   extract it to a folder to stream it).
2. A folder streams when the augmentation is "random_resized_crop": the crop is taken from each image at its
   own size and aspect ratio, which the in-memory path (every image resized to one square) no longer has.
3. Otherwise a folder streams when its images, decoded at the training size, would exceed MEMORY_LIMIT
   (4 GiB: N x size x size x 3 bytes, on the device for the in-memory path): ImageNet at 224 px is ~190 GB;
   CIFAR-10 at 32 px is 184 MB, and 200,000 images at 64 px are 2.5 GB, both in memory.
"memory" or "stream" force a path (`--data-pipeline`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from resnetlab.data.arrays import validation_mask
from resnetlab.data.cache import resolve_cache_dir
from resnetlab.data.listing import FolderListing, list_image_folder
from resnetlab.data.sources import NAMED_SOURCES
from resnetlab.data.stream import ImageFiles
from resnetlab.data.transforms import ImageTransform
from resnetlab.errors import DataError

PIPELINES = ("auto", "memory", "stream")
STREAM_AUGMENTATIONS = ("random_resized_crop",)  # per image, in the workers; the others run on the device
MEMORY_LIMIT = 4 * 2**30


def choose_pipeline(requested: str, source: str, image_size: int, augmentation: str,
                    cache_dir: Path | None = None) -> str:
    """"memory" or "stream" for this dataset, by the rule in the module docstring."""
    if requested not in PIPELINES:
        raise DataError(f"unknown data pipeline {requested!r}: choose one of {', '.join(PIPELINES)}")
    path = Path(source).expanduser() if source else None
    is_folder = path is not None and source.strip().lower() not in NAMED_SOURCES and path.is_dir()
    if requested == "stream" and not is_folder:
        raise DataError(f"the streaming path reads image folders; {source or 'the default dataset'} is not one "
                        "(extract an archive to a folder first, or use --data-pipeline memory)")
    if requested == "memory" and augmentation in STREAM_AUGMENTATIONS:
        raise DataError(f"augmentation {augmentation} needs the streaming path (--data-pipeline stream): "
                        "it crops each image at its own size")
    if requested != "auto":
        return requested
    if not is_folder:
        if augmentation in STREAM_AUGMENTATIONS:
            raise DataError(f"augmentation {augmentation} needs an image folder (the streaming path); "
                            f"{source or 'the default dataset'} is not one")
        return "memory"
    if augmentation in STREAM_AUGMENTATIONS:
        return "stream"
    listing = list_image_folder(path, resolve_cache_dir(cache_dir))
    decoded = sum(listing.count(split) for split in listing.paths) * image_size * image_size * 3
    return "stream" if decoded > MEMORY_LIMIT else "memory"


@dataclass
class StreamSplits:
    """The streaming path's train, val (held out of train) and test splits, each with its transform."""

    train: ImageFiles
    test: ImageFiles
    classes: list[str]
    listing: FolderListing
    val: ImageFiles | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def stream_splits(source: str, image_size: int, augmentation: str, val_split: int = 0, seed: int = 0,
                  cache_dir: Path | None = None) -> StreamSplits:
    """Train with RandomResizedCrop + flip (for "random_resized_crop") or the evaluation transform (the device
    augmentation follows), val and test with resize + centre crop, all at `image_size`."""
    listing = list_image_folder(Path(source).expanduser(), resolve_cache_dir(cache_dir))
    evaluation = ImageTransform.for_eval(image_size)
    train_transform = (ImageTransform(train=True, size=image_size) if augmentation in STREAM_AUGMENTATIONS
                       else evaluation)
    train_rows = np.arange(listing.count("train"))
    val = None
    if val_split:
        is_val = validation_mask(listing.labels["train"], val_split, seed)
        train_rows = np.flatnonzero(~is_val)
        val = ImageFiles.from_listing(listing, "train", evaluation, seed, subset=np.flatnonzero(is_val))
    return StreamSplits(train=ImageFiles.from_listing(listing, "train", train_transform, seed, subset=train_rows),
                        test=ImageFiles.from_listing(listing, "test", evaluation, seed), classes=listing.classes,
                        listing=listing, val=val)
