"""Seeded stand-in data of the right shapes, for smoke runs and benchmarks that must not wait for a download."""

from __future__ import annotations

import numpy as np

from resnetlab.data.arrays import Dataset, ImageArrays
from resnetlab.errors import DataError


def synthetic_dataset(
    sizes: tuple[int, int] = (2048, 512), num_classes: int = 10, image_size: int = 32, seed: int = 0
) -> Dataset:
    """Random uint8 images with balanced labels.

    Each image is the average of a per-class random template and per-image noise, so a network can learn
    the classes: a smoke run shows the loss falling, not only that the code runs.
    """
    n_train, n_test = sizes
    if n_train < 1 or n_test < 1 or num_classes < 1:
        raise DataError(f"synthetic data needs positive sizes and classes, got sizes={sizes} classes={num_classes}")
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, size=(num_classes, image_size, image_size, 3), dtype=np.uint8)

    def split(n: int) -> ImageArrays:
        labels = rng.permutation(np.arange(n, dtype=np.int64) % num_classes)
        noise = rng.integers(0, 256, size=(n, image_size, image_size, 3), dtype=np.uint8)
        images = ((templates[labels].astype(np.uint16) + noise) // 2).astype(np.uint8)
        return ImageArrays(images, labels)

    train, test = split(n_train), split(n_test)
    classes = [f"class{i}" for i in range(num_classes)]
    return Dataset(train=train, test=test, classes=classes, name="synthetic")
