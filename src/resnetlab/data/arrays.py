"""In-memory datasets: uint8 image arrays with labels, and the held-out validation split."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from resnetlab.errors import DataError


@dataclass
class ImageArrays:
    """One split: images as uint8 (N, H, W, 3) and labels as int64 (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise DataError(f"images must be uint8 (N, H, W, 3), got {self.images.dtype} {self.images.shape}")
        if self.labels.dtype != np.int64 or self.labels.shape != (len(self.images),):
            raise DataError(
                f"labels must be int64 ({len(self.images)},) to match the images, got {self.labels.dtype} "
                f"{self.labels.shape}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of every image."""
        return self.images.shape[1], self.images.shape[2]

    def subset(self, indices: np.ndarray) -> ImageArrays:
        """A copy holding only the given rows, in the given order."""
        return ImageArrays(np.ascontiguousarray(self.images[indices]), np.ascontiguousarray(self.labels[indices]))


@dataclass
class Dataset:
    """Train and test splits plus class names; `val` is carved out of train by `split_validation`."""

    train: ImageArrays
    test: ImageArrays
    classes: list[str]
    name: str
    val: ImageArrays | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def split_validation(ds: Dataset, n_val: int, seed: int = 0) -> Dataset:
    """Hold out `n_val` training images, stratified by class, so that model selection never sees the test set.

    Both parts keep the original order of the training set (see `validation_mask`).
    """
    if n_val == 0:
        return ds
    if ds.val is not None:
        raise DataError(f"dataset {ds.name} already has a validation split of {len(ds.val)} images")
    is_val = validation_mask(ds.train.labels, n_val, seed)
    return dataclasses.replace(
        ds, train=ds.train.subset(np.flatnonzero(~is_val)), val=ds.train.subset(np.flatnonzero(is_val))
    )


def validation_mask(labels: np.ndarray, n_val: int, seed: int = 0) -> np.ndarray:
    """Which of the training images (by their labels) to hold out: `n_val` of them, stratified by class.

    Each class gives up a share of `n_val` proportional to its size (within one image); which images go is
    a seeded permutation.
    """
    n = len(labels)
    if not 0 < n_val < n:
        raise DataError(f"validation size must be between 0 and {n - 1} (the training set has {n} images), got {n_val}")
    perm = np.random.default_rng(seed).permutation(n)
    shuffled = labels[perm]
    # Rank of each shuffled image within its class; taking the lowest rank/count first spreads n_val over
    # the classes in proportion to their sizes.
    by_class = np.argsort(shuffled, kind="stable")
    counts = np.bincount(shuffled, minlength=int(labels.max()) + 1)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(n, dtype=np.int64)
    rank[by_class] = np.arange(n) - starts[shuffled[by_class]]
    chosen = np.argsort(rank / counts[shuffled], kind="stable")[:n_val]
    is_val = np.zeros(n, dtype=bool)
    is_val[perm[chosen]] = True
    return is_val
