"""DeviceLoader batches and the validation split: coverage, reproducibility, resumption, sharding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from data_helpers import random_images

from resnetlab.data import Dataset, DeviceLoader, ImageArrays, fit_normalizer, split_validation
from resnetlab.errors import DataError, UserError


def _arrays(n: int = 50, size: int = 8) -> ImageArrays:
    images = random_images(n, size)
    images[:, 0, 0, 0] = np.arange(n)  # pixel (0, 0) of the red channel identifies the image
    return ImageArrays(images, np.arange(n, dtype=np.int64) % 5)


def _loader(arrays: ImageArrays, batch_size: int = 8, **kwargs) -> DeviceLoader:
    return DeviceLoader(arrays, batch_size, normalizer=fit_normalizer("none", arrays.images), **kwargs)


def _ids(x: torch.Tensor) -> list[int]:
    return (x[:, 0, 0, 0] * 255).round().long().tolist()


def test_covers_every_image_once_without_drop_last():
    arrays = _arrays(50)
    loader = _loader(arrays, 8, drop_last=False)
    assert len(loader) == 7
    seen = []
    for x, y in loader.epoch(0):
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape[1:] == (3, 8, 8)
        ids = _ids(x)
        assert y.tolist() == [i % 5 for i in ids]
        seen += ids
    assert sorted(seen) == list(range(50))
    assert seen != list(range(50))  # shuffled


def test_drop_last_and_order_without_shuffle():
    loader = _loader(_arrays(50), 8, shuffle=False)
    batches = [_ids(x) for x, _ in loader.epoch(0)]
    assert len(loader) == len(batches) == 6
    assert [i for batch in batches for i in batch] == list(range(48))


@pytest.mark.parametrize("augmentation", ["none", "crop_flip", "keras"])
def test_same_seed_and_epoch_same_batches(augmentation):
    arrays = _arrays()
    a = list(_loader(arrays, augmentation=augmentation, seed=3).epoch(2))
    b = list(_loader(arrays, augmentation=augmentation, seed=3).epoch(2))
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b, strict=True))
    c = list(_loader(arrays, augmentation=augmentation, seed=3).epoch(3))
    assert not all(torch.equal(ya, yc) for (_, ya), (_, yc) in zip(a, c, strict=True))


@pytest.mark.parametrize("augmentation", ["none", "crop_flip", "keras"])
def test_start_batch_gives_the_tail(augmentation):
    loader = _loader(_arrays(), augmentation=augmentation, seed=1)
    full = list(loader.epoch(4))
    tail = list(loader.epoch(4, start_batch=3))
    assert len(tail) == len(full) - 3
    assert all(torch.equal(xf, xt) and torch.equal(yf, yt) for (xf, yf), (xt, yt) in zip(full[3:], tail, strict=True))
    assert list(loader.epoch(4, start_batch=len(loader))) == []


@pytest.mark.parametrize("drop_last", [True, False])
def test_ranks_take_disjoint_shards(drop_last):
    arrays = _arrays(50)
    loaders = [_loader(arrays, 4, rank=r, world_size=3, drop_last=drop_last, seed=2) for r in range(3)]
    assert len({len(lo) for lo in loaders}) == 1
    shards = [[i for x, _ in lo.epoch(1) for i in _ids(x)] for lo in loaders]
    assert len({len(s) for s in shards}) == 1
    if drop_last:
        assert len(shards[0]) == 16  # 50 // 3 = 16 per rank, 4 batches of 4
        assert not set(shards[0]) & set(shards[1]) and not set(shards[1]) & set(shards[2])
        assert not set(shards[0]) & set(shards[2])
    else:
        assert set().union(*shards) == set(range(50))  # every image served; the wrap-around repeats one
        assert sum(map(len, shards)) == 51


def test_channels_last():
    x, _ = next(_loader(_arrays(), channels_last=True).epoch(0))
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_normalizer_applied():
    arrays = _arrays()
    norm = fit_normalizer("pixel_mean", arrays.images)
    loader = DeviceLoader(arrays, 50, normalizer=norm, shuffle=False)
    ((x, _),) = loader.epoch(0)
    torch.testing.assert_close(x.mean(0), torch.zeros(3, 8, 8), atol=1e-6, rtol=0)


def test_batch_larger_than_split():
    with pytest.raises(DataError, match="batch size 64 is larger than the 50 images"):
        _loader(_arrays(50), 64)
    assert len(_loader(_arrays(50), 64, drop_last=False)) == 1


def test_bad_arguments():
    with pytest.raises(UserError, match="unknown augmentation"):
        _loader(_arrays(), augmentation="cutout")
    with pytest.raises(UserError, match="rank 3"):
        _loader(_arrays(), rank=3, world_size=2)
    with pytest.raises(UserError, match="start batch"):
        _loader(_arrays()).epoch(0, start_batch=99)


def _dataset(n: int = 100) -> Dataset:
    train = ImageArrays(random_images(n, 4), np.repeat(np.arange(4), [40, 30, 20, 10]).astype(np.int64))
    return Dataset(
        train=train, test=ImageArrays(random_images(5, 4), np.zeros(5, np.int64)), classes=list("abcd"), name="toy"
    )


def test_split_validation_is_stratified_and_seeded():
    ds = _dataset()
    split = split_validation(ds, 20, seed=1)
    assert len(split.train) == 80 and len(split.val) == 20
    assert np.bincount(split.val.labels).tolist() == [8, 6, 4, 2]
    both = np.concatenate([split.train.images, split.val.images]).reshape(100, -1)
    assert len(np.unique(both, axis=0)) == 100  # disjoint and complete
    again = split_validation(ds, 20, seed=1)
    assert np.array_equal(again.val.images, split.val.images)
    assert not np.array_equal(split_validation(ds, 20, seed=2).val.images, split.val.images)
    assert split.test is ds.test and ds.val is None


def test_split_validation_edges():
    ds = _dataset()
    assert split_validation(ds, 0) is ds
    with pytest.raises(DataError, match="validation size"):
        split_validation(ds, 100)
    with pytest.raises(DataError, match="already has"):
        split_validation(split_validation(ds, 10), 10)
