"""The real CIFAR-10 JPEG archive (18 MB, ~15 s cold): run with `pytest -m slow`."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from resnetlab.data import load_dataset

ARCHIVE = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10-jpeg.tar.xz"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.mark.slow
@pytest.mark.skipif(not ARCHIVE.exists(), reason=f"{ARCHIVE} not present")
def test_real_cifar10_jpeg_archive(tmp_path):
    cold = load_dataset(ARCHIVE, cache_dir=tmp_path)
    start = time.perf_counter()
    warm = load_dataset(ARCHIVE, cache_dir=tmp_path)
    assert time.perf_counter() - start < 1.0
    for ds in (cold, warm):
        assert ds.classes == CIFAR10_CLASSES
        assert ds.train.images.shape == (50000, 32, 32, 3) and ds.test.images.shape == (10000, 32, 32, 3)
        assert np.bincount(ds.train.labels).tolist() == [5000] * 10
        assert np.bincount(ds.test.labels).tolist() == [1000] * 10
    np.testing.assert_array_equal(cold.train.images, warm.train.images)
