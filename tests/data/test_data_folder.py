"""Image folders as directories and archives, the array cache, and the other named sources."""

from __future__ import annotations

import numpy as np
import pytest
from data_helpers import encode, pack, random_images

from resnetlab.data import folder, load_dataset
from resnetlab.data.cache import entry_dir
from resnetlab.errors import DataError


def _check(ds, expected) -> None:
    classes = sorted(expected["train"])
    assert ds.classes == classes  # sorted names, whatever order they were written in
    for split, arrays in (("train", ds.train), ("test", ds.test)):
        images = np.concatenate([expected[split][c] for c in classes])
        labels = np.concatenate([np.full(len(expected[split][c]), i) for i, c in enumerate(classes)])
        np.testing.assert_array_equal(arrays.images, images)
        np.testing.assert_array_equal(arrays.labels, labels)
        assert arrays.labels.dtype == np.int64


def test_directory(image_folder):
    root, expected = image_folder()
    ds = load_dataset(str(root))
    _check(ds, expected)
    assert ds.name == f"folder:{root.resolve()}"


def test_directory_one_level_down(image_folder, tmp_path):
    _, expected = image_folder(tmp_path / "outer" / "cifar-mini")
    _check(load_dataset(tmp_path / "outer"), expected)


@pytest.mark.parametrize("suffix", [".tar.xz", ".zip", ".tgz", ".tar"])
def test_archive(image_folder, tmp_path, suffix):
    root, expected = image_folder()
    archive = pack(root, tmp_path / f"mini{suffix}", arcname="mini")
    ds = load_dataset(str(archive))
    _check(ds, expected)
    assert ds.name == f"folder:{archive.resolve()}"


def test_archive_without_top_folder(image_folder, tmp_path):
    root, expected = image_folder()
    _check(load_dataset(pack(root, tmp_path / "flat.zip", arcname="")), expected)


def test_modes_are_converted_and_resized(tmp_path):
    image = random_images(1, 12, seed=3)[0]
    for split in ("train", "test"):
        for i, mode in enumerate(("L", "RGBA", "P", "RGB")):
            path = tmp_path / "mixed" / split / "only" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encode(image, "PNG", mode))
        (tmp_path / "mixed" / split / "only" / "4.jpg").write_bytes(encode(image, "JPEG"))
        (tmp_path / "mixed" / split / "only" / "notes.txt").write_text("not an image, ignored")
        (tmp_path / "mixed" / split / "second").mkdir()  # a dataset needs two classes; "only" sorts first
        (tmp_path / "mixed" / split / "second" / "0.png").write_bytes(encode(image, "PNG"))
    ds = load_dataset(tmp_path / "mixed", image_size=6)
    assert ds.train.images.shape == (6, 6, 6, 3) and ds.test.images.shape == (6, 6, 6, 3)
    gray = ds.train.images[0]
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()


def test_cache_hit_does_not_decode(image_folder, monkeypatch):
    root, expected = image_folder()
    load_dataset(root)

    def fail(*args, **kwargs):
        raise AssertionError("decoded again despite a cache entry")

    monkeypatch.setattr(folder, "decode_images", fail)
    _check(load_dataset(root), expected)


def test_archive_cache_hit_does_not_read(image_folder, tmp_path, monkeypatch):
    root, expected = image_folder()
    archive = pack(root, tmp_path / "mini.tar.xz")
    load_dataset(archive)
    monkeypatch.setattr(folder, "read_members", lambda *a: pytest.fail("archive read again"))
    _check(load_dataset(archive), expected)


def test_changed_directory_is_reloaded(image_folder):
    root, expected = image_folder()
    load_dataset(root)
    new = random_images(1, seed=99)
    (root / "train" / "dog" / "9999.png").write_bytes(encode(new[0]))
    ds = load_dataset(root)
    assert len(ds.train) == len(expected["train"]["dog"]) * 3 + 1


def test_other_image_size_is_another_entry(image_folder):
    root, _ = image_folder()
    assert load_dataset(root, image_size=4).train.images.shape[1:] == (4, 4, 3)
    assert load_dataset(root).train.images.shape[1:] == (32, 32, 3)


def test_corrupt_cache_is_rebuilt(image_folder, isolated_env):
    root, expected = image_folder()
    load_dataset(root)
    (npy,) = (isolated_env / "arrays").glob("*/train_images.npy")
    npy.write_bytes(npy.read_bytes()[:-50])
    with pytest.warns(RuntimeWarning, match="corrupt"):
        _check(load_dataset(root), expected)
    _check(load_dataset(root), expected)  # rebuilt entry loads cleanly


def test_cache_entry_with_wrong_shape_is_rebuilt(image_folder, isolated_env):
    root, expected = image_folder()
    load_dataset(root)
    (npy,) = (isolated_env / "arrays").glob("*/test_labels.npy")
    np.save(npy, np.zeros(1, dtype=np.int64))
    with pytest.warns(RuntimeWarning, match="corrupt"):
        _check(load_dataset(root), expected)


def test_unfinished_cache_entry_is_ignored(image_folder, isolated_env):
    root, expected = image_folder()
    load_dataset(root)
    (meta,) = (isolated_env / "arrays").glob("*/meta.json")
    meta.unlink()
    _check(load_dataset(root), expected)


def test_synthetic():
    ds = load_dataset("synthetic", synthetic_size=(40, 10), num_classes=4, image_size=16)
    assert ds.train.images.shape == (40, 16, 16, 3) and ds.test.images.shape == (10, 16, 16, 3)
    assert ds.classes == ["class0", "class1", "class2", "class3"] and ds.name == "synthetic"
    assert np.bincount(ds.train.labels).tolist() == [10, 10, 10, 10]
    again = load_dataset("synthetic", synthetic_size=(40, 10), num_classes=4, image_size=16)
    np.testing.assert_array_equal(ds.train.images, again.train.images)


def test_env_source(image_folder, monkeypatch):
    root, expected = image_folder()
    monkeypatch.setenv("RESNETLAB_DATA", str(root))
    _check(load_dataset(None), expected)


def test_cache_dir_argument(image_folder, tmp_path):
    root, _ = image_folder()
    load_dataset(root, cache_dir=tmp_path / "elsewhere")
    assert entry_dir(tmp_path / "elsewhere", "x").parent.exists()


def test_bad_image_size(image_folder):
    root, _ = image_folder()
    with pytest.raises(DataError, match="image size"):
        load_dataset(root, image_size=0)
