"""Fixtures for the data tests: an isolated cache, no network, and small generated datasets on disk."""

from __future__ import annotations

import io
import pickle
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from data_helpers import encode, random_images

CLASSES = ["cat", "airplane", "dog"]  # deliberately unsorted: labels must follow sorted names


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the cache at a temporary folder and any download at a URL that cannot resolve."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("RESNETLAB_CACHE", str(cache))
    monkeypatch.setenv("RESNETLAB_CIFAR_URL", (tmp_path / "no-such-mirror").as_uri())
    monkeypatch.delenv("RESNETLAB_DATA", raising=False)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    return cache


@pytest.fixture
def image_folder(tmp_path: Path) -> Callable[..., tuple[Path, dict]]:
    """Write `<root>/{train,test}/<class>/<i>.png` of random images; returns (root, {split: {class: images}})."""

    def make(root: Path | None = None, classes=CLASSES, n_train: int = 3, n_test: int = 2, size: int = 32):
        root = root or tmp_path / "folder"
        expected: dict[str, dict[str, np.ndarray]] = {}
        for s, (split, n) in enumerate((("train", n_train), ("test", n_test))):
            expected[split] = {}
            for c, name in enumerate(classes):
                images = random_images(n, size, seed=100 * s + c)
                expected[split][name] = images
                folder = root / split / name
                folder.mkdir(parents=True)
                for i, image in enumerate(images):
                    (folder / f"{i:04d}.png").write_bytes(encode(image))
        return root, expected

    return make


def _batch(images: np.ndarray, labels: np.ndarray, labels_key: bytes) -> dict:
    # The official layout: (N, 3072) uint8 rows of R, G, B planes, labels as a list, bytes keys.
    return {b"data": images.transpose(0, 3, 1, 2).reshape(len(images), -1), labels_key: labels.tolist()}


@pytest.fixture
def cifar_tarball(tmp_path: Path) -> Callable[..., tuple[Path, dict]]:
    """Write a small tarball in the official format; returns (path, {"train"|"test": (images, labels), ...})."""

    def make(kind: str = "cifar10", folder: Path | None = None, n_train: int = 4, n_test: int = 3):
        folder = folder or tmp_path / "mirror"
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(7)
        if kind == "cifar10":
            names, top, filename = [f"c{i}" for i in range(10)], "cifar-10-batches-py", "cifar-10-python.tar.gz"
            train_files, test_file, meta_file = [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "batches.meta"
            labels_key, names_key = b"labels", b"label_names"
        else:
            names, top, filename = [f"f{i:02d}" for i in range(100)], "cifar-100-python", "cifar-100-python.tar.gz"
            train_files, test_file, meta_file = ["train"], "test", "meta"
            labels_key, names_key = b"fine_labels", b"fine_label_names"
        members: dict[str, bytes] = {}
        train_parts = []
        for name in train_files:
            images = rng.integers(0, 256, size=(n_train, 32, 32, 3), dtype=np.uint8)
            labels = rng.integers(0, len(names), size=n_train)
            train_parts.append((images, labels))
            batch = _batch(images, labels, labels_key)
            if kind == "cifar100":
                batch[b"coarse_labels"] = (labels // 5).tolist()
            members[name] = pickle.dumps(batch, protocol=2)
        test_images = rng.integers(0, 256, size=(n_test, 32, 32, 3), dtype=np.uint8)
        test_labels = rng.integers(0, len(names), size=n_test)
        members[test_file] = pickle.dumps(_batch(test_images, test_labels, labels_key), protocol=2)
        members[meta_file] = pickle.dumps({names_key: [n.encode() for n in names]}, protocol=2)
        path = folder / filename
        with tarfile.open(path, "w:gz") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(f"{top}/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        expected = {
            "train": (np.concatenate([p[0] for p in train_parts]), np.concatenate([p[1] for p in train_parts])),
            "test": (test_images, test_labels),
            "classes": names,
        }
        return path, expected

    return make
