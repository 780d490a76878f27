"""Shared fixtures: a tiny image-folder dataset and an isolated cache, so no test reads the real data."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# Tiny models gain nothing from a second thread, and on a busy 2-core machine OpenMP threads that wait for each
# other make them many times slower; one thread keeps the suite fast and its timing stable.
torch.set_num_threads(1)

TINY_CLASSES = ("cat", "dog", "ship")


@pytest.fixture(autouse=True, scope="session")
def session_cache(tmp_path_factory):
    """A temporary cache for the whole session, set before any fixture runs: module- and session-scoped fixtures
    (a trained run shared by a file's tests) load data before the per-test fixture below applies, and without
    this they would write into the user's real cache (~/.cache/resnetlab)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("RESNETLAB_CACHE", str(tmp_path_factory.mktemp("session-cache")))
    patch.delenv("RESNETLAB_DATA", raising=False)
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own cache directory and no $RESNETLAB_DATA from the environment."""
    monkeypatch.setenv("RESNETLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("RESNETLAB_DATA", raising=False)


def write_tiny_folder(root: Path, train_per_class: int = 24, test_per_class: int = 8, size: int = 32) -> Path:
    """Images whose class is learnable: each class has its own mean colour, plus noise."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for label, name in enumerate(TINY_CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                base = np.zeros((size, size, 3))
                base[..., label] = 180
                pixels = np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{index:04d}.png")
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A 3-class image folder: 72 training and 24 test images of 32x32."""
    return write_tiny_folder(tmp_path_factory.mktemp("tiny") / "tiny")
