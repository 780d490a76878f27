"""The streaming path: cached listing, batches, rank sharding, errors, bounded memory, the path rule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DistributedSampler

from resnetlab.data import listing as listing_module
from resnetlab.data.listing import list_image_folder
from resnetlab.data.normalize import fit_normalizer
from resnetlab.data.pipeline import MEMORY_LIMIT, choose_pipeline, stream_splits
from resnetlab.data.stream import ImageFiles, StreamLoader, decode_sample
from resnetlab.data.transforms import ImageTransform
from resnetlab.errors import DataError

CLASSES = ("cat", "dog")


def write_folder(root: Path, per_class: dict[str, int], size=(40, 30), seed: int = 0) -> Path:
    """PNG images of random sizes near `size`; pixel (0, 0) holds the image's number, to identify it later."""
    rng = np.random.default_rng(seed)
    number = 0
    for split, count in per_class.items():
        for name in CLASSES:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                w, h = size[0] + int(rng.integers(0, 9)), size[1] + int(rng.integers(0, 9))
                pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:03d}.png")
                number += 1
    return root


def eval_loader(files, batch_size=4, **kwargs):
    normalizer = fit_normalizer("none", np.zeros((1, 8, 8, 3), dtype=np.uint8))
    return StreamLoader(files, batch_size, normalizer=normalizer, num_workers=kwargs.pop("num_workers", 0), **kwargs)


def test_listing_is_cached_until_a_folder_changes(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "photos", {"train": 3, "test": 2})
    cache = tmp_path / "cache"
    first = list_image_folder(root, cache)
    assert first.classes == list(CLASSES) and first.count("train") == 6 and first.count("test") == 4
    assert first.labels["train"].tolist() == [0, 0, 0, 1, 1, 1]
    assert first.path("train", 4) == (root / "train" / "dog" / "001.png").resolve()
    walks = []
    real_walk = listing_module._walk
    monkeypatch.setattr(listing_module, "_walk", lambda r: walks.append(r) or real_walk(r))
    assert list_image_folder(root, cache).paths["train"].tolist() == first.paths["train"].tolist()
    assert walks == []  # read back from the cache
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(root / "train" / "cat" / "new.png")
    again = list_image_folder(root, cache)
    assert len(walks) == 1 and again.count("train") == 7  # the class folder's mtime changed: listed again


def test_listing_checks_the_layout(tmp_path):
    root = write_folder(tmp_path / "photos", {"train": 2, "test": 1})
    (root / "test" / "dog" / "000.png").unlink()
    with pytest.raises(DataError, match="has no images"):
        list_image_folder(root, tmp_path / "cache")


def test_batches_hold_the_eval_transform_of_each_file(tmp_path):
    root = write_folder(tmp_path / "photos", {"train": 3, "test": 2})
    splits = stream_splits(str(root), 16, "none", cache_dir=tmp_path / "cache")
    loader = eval_loader(splits.test, batch_size=3, shuffle=False, drop_last=False)
    batches = list(loader.epoch(0))
    assert [x.shape for x, _ in batches] == [(3, 3, 16, 16), (1, 3, 16, 16)]
    x = torch.cat([x for x, _ in batches])
    for i in range(4):
        with Image.open(splits.test.file(i)) as image:
            expected = ImageTransform.for_eval(16)(image)
        np.testing.assert_allclose(x[i].permute(1, 2, 0).numpy() * 255, expected, atol=1e-3)
    assert torch.cat([y for _, y in batches]).tolist() == [0, 0, 1, 1]


def test_random_crops_do_not_depend_on_workers_or_batch_size(tmp_path):
    root = write_folder(tmp_path / "photos", {"train": 4, "test": 1})
    splits = stream_splits(str(root), 16, "random_resized_crop", cache_dir=tmp_path / "cache")
    by_image = []
    for workers, batch in ((0, 2), (2, 4)):
        loader = eval_loader(splits.train, batch_size=batch, seed=3, num_workers=workers)
        order = loader.indices(1).tolist()
        images = torch.cat([x for x, _ in loader.epoch(1)])
        by_image.append({index: images[row] for row, index in enumerate(order)})
    assert by_image[0].keys() == by_image[1].keys()
    for index, image in by_image[0].items():
        torch.testing.assert_close(image, by_image[1][index], rtol=0, atol=0)
    later = torch.cat([x for x, _ in eval_loader(splits.train, batch_size=2, seed=3).epoch(2)])
    assert not torch.equal(later, torch.cat([x for x, _ in eval_loader(splits.train, batch_size=2, seed=3).epoch(1)]))


@pytest.mark.parametrize("n, drop_last", [(10, False), (11, False), (11, True)])
def test_ranks_shard_like_distributed_sampler(tmp_path, n, drop_last):
    files = ImageFiles(tmp_path, np.array([b"x"] * n), np.zeros(n, dtype=np.int64), ImageTransform.for_eval(8))
    for rank in range(2):
        loader = eval_loader(files, batch_size=1, shuffle=False, drop_last=drop_last, rank=rank, world_size=2)
        sampler = DistributedSampler(range(n), num_replicas=2, rank=rank, shuffle=False, drop_last=drop_last)
        assert loader.indices(0).tolist() == list(sampler)


def test_every_image_once_per_epoch_across_ranks(tmp_path):
    root = write_folder(tmp_path / "photos", {"train": 6, "test": 1}, size=(12, 12))
    splits = stream_splits(str(root), 8, "random_resized_crop", cache_dir=tmp_path / "cache")
    for epoch in (0, 1):
        seen = []
        for rank in range(2):
            loader = eval_loader(splits.train, batch_size=3, rank=rank, world_size=2, seed=5)
            order = loader.indices(epoch).tolist()
            labels = torch.cat([y for _, y in loader.epoch(epoch)]).tolist()
            assert labels == splits.train.labels[order].tolist()  # the batches carry the images the order names
            seen += order
        assert sorted(seen) == list(range(12))


def test_resume_from_a_batch_gives_the_same_batches(tmp_path):
    root = write_folder(tmp_path / "photos", {"train": 4, "test": 1})
    splits = stream_splits(str(root), 16, "random_resized_crop", cache_dir=tmp_path / "cache")
    loader = eval_loader(splits.train, batch_size=2, seed=1)
    whole = [x for x, _ in loader.epoch(0)]
    resumed = [x for x, _ in loader.epoch(0, start_batch=2)]
    assert len(resumed) == 2 and all(torch.equal(a, b) for a, b in zip(whole[2:], resumed))


class WorkerPidFiles(ImageFiles):
    """Labels replaced by the pid of the process that decoded the batch."""

    def __getitems__(self, keys):
        images, labels = super().__getitems__(keys)
        return images, torch.full_like(labels, os.getpid())


def test_workers_start_once_and_serve_every_epoch(tmp_path):
    root = write_folder(tmp_path / "photos", {"train": 4, "test": 1})
    splits = stream_splits(str(root), 16, "random_resized_crop", cache_dir=tmp_path / "cache")
    files = splits.train
    pid_files = WorkerPidFiles(files.root, files.paths, files.labels, files.transform, files.seed)
    loader = eval_loader(pid_files, batch_size=2, seed=1, num_workers=2)
    pids = [set(torch.cat([y for _, y in loader.epoch(epoch)]).tolist()) for epoch in range(3)]
    assert len(pids[0]) == 2 and os.getpid() not in pids[0]
    assert pids[0] == pids[1] == pids[2]  # the same two worker processes in every epoch
    for epoch in range(3):  # and each epoch's batches are those of a loader made for that epoch alone
        fresh = eval_loader(files, batch_size=2, seed=1, num_workers=2).epoch(epoch)
        kept = eval_loader(files, batch_size=2, seed=1, num_workers=2)
        for other in range(epoch):
            list(kept.epoch(other))
        assert all(torch.equal(a, b) for (a, _), (b, _) in zip(fresh, kept.epoch(epoch), strict=True))


def test_two_epochs_read_at_once_each_get_their_own_batches(tmp_path):
    root = write_folder(tmp_path / "photos", {"train": 4, "test": 1})
    splits = stream_splits(str(root), 16, "random_resized_crop", cache_dir=tmp_path / "cache")
    alone = [[x for x, _ in eval_loader(splits.train, batch_size=2, seed=1, num_workers=2).epoch(e)] for e in (0, 1)]
    loader = eval_loader(splits.train, batch_size=2, seed=1, num_workers=2)
    first, second = loader.epoch(0), loader.epoch(1)
    interleaved = [(next(first)[0], next(second)[0]) for _ in range(len(loader))]
    assert all(torch.equal(a, x) and torch.equal(b, y) for (a, b), x, y in zip(interleaved, *alone, strict=True))
    stopped = loader.epoch(1)
    next(stopped)
    del stopped  # an epoch left after its first batch (an early stop): the next epoch still gets its own batches
    again = [x for x, _ in loader.epoch(0)]
    assert all(torch.equal(a, b) for a, b in zip(again, alone[0], strict=True))


def test_a_bad_file_is_one_line_naming_it_even_from_a_worker(tmp_path):
    root = write_folder(tmp_path / "photos", {"train": 2, "test": 1})
    bad = root / "train" / "dog" / "001.png"
    bad.write_bytes(bad.read_bytes()[:60])
    splits = stream_splits(str(root), 16, "none", cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match=r"cannot decode image .*001\.png: .*; remove or replace that file") as caught:
        list(eval_loader(splits.train, batch_size=2, num_workers=1).epoch(0))
    assert "\n" not in str(caught.value) and "Traceback" not in str(caught.value)


def test_validation_split_is_held_out_of_training(tmp_path):
    root = write_folder(tmp_path / "photos", {"train": 5, "test": 1})
    splits = stream_splits(str(root), 8, "random_resized_crop", val_split=4, cache_dir=tmp_path / "cache")
    train_files = {splits.train.paths[i] for i in range(len(splits.train))}
    val_files = {splits.val.paths[i] for i in range(len(splits.val))}
    assert len(val_files) == 4 and len(train_files) == 6 and not train_files & val_files
    assert sorted(splits.val.labels.tolist()) == [0, 0, 1, 1]  # stratified
    assert not splits.val.transform.train and splits.train.transform.train


def test_the_rule_that_picks_the_path(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "photos", {"train": 2, "test": 1})
    cache = tmp_path / "cache"
    assert choose_pipeline("auto", str(root), 32, "crop_flip", cache) == "memory"
    assert choose_pipeline("auto", str(root), 224, "random_resized_crop", cache) == "stream"
    assert choose_pipeline("stream", str(root), 32, "crop_flip", cache) == "stream"
    monkeypatch.setattr("resnetlab.data.pipeline.MEMORY_LIMIT", 6 * 32 * 32 * 3 - 1)  # 6 images of 32 px
    assert choose_pipeline("auto", str(root), 32, "crop_flip", cache) == "stream"
    assert choose_pipeline("memory", str(root), 32, "crop_flip", cache) == "memory"
    assert MEMORY_LIMIT == 4 * 2**30
    with pytest.raises(DataError, match="reads image folders"):
        choose_pipeline("stream", "cifar10", 32, "crop_flip", cache)
    with pytest.raises(DataError, match="needs the streaming path"):
        choose_pipeline("memory", str(root), 32, "random_resized_crop", cache)
    with pytest.raises(DataError, match="needs an image folder"):
        choose_pipeline("auto", "synthetic", 32, "random_resized_crop", cache)


MEMORY_PROBE = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    from resnetlab.data.normalize import fit_normalizer
    from resnetlab.data.pipeline import stream_splits
    from resnetlab.data.stream import StreamLoader
    from resnetlab.data.transforms import ImageTransform

    def status_mb(field):  # VmHWM, not ru_maxrss: that one keeps the peak of the process before exec
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith(field)) / 1024

    splits = stream_splits(sys.argv[1], 64, "random_resized_crop")
    splits.train.transform = ImageTransform(train=True, size=64, draft=False)  # decode every image in full
    normalizer = fit_normalizer("none", np.zeros((1, 8, 8, 3), dtype=np.uint8))
    loader = StreamLoader(splits.train, 4, normalizer=normalizer, num_workers=2)
    before = status_mb("VmRSS")
    images = sum(len(y) for _, y in loader.epoch(0))
    peak_self = status_mb("VmHWM")
    peak_worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"images": images, "before": before, "peak_self": peak_self, "peak_worker": peak_worker}))
""")


@pytest.mark.slow
def test_memory_is_bounded_by_the_pipeline_not_the_dataset(tmp_path):
    """40 JPEGs of 2000x1600 px: 384 MB decoded, more than the process may grow by."""
    root = tmp_path / "large"
    y, x = np.mgrid[0:1600, 0:2000]
    base = np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8)
    for split, count in (("train", 20), ("test", 1)):
        for name in CLASSES:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(np.roll(base, 7 * i, axis=1)).save(folder / f"{i}.jpg", quality=80)
    decoded_mb = 40 * 2000 * 1600 * 3 / 2**20
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(root)], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["images"] == 40
    # the main process receives 4 x 64 x 64 x 3 batches; a worker holds one decoded 9.2 MB image at a time
    assert report["peak_self"] - report["before"] < 60
    assert report["peak_worker"] - report["before"] < 120 < decoded_mb / 3


def test_a_fitted_normalizer_sees_a_sample_through_the_evaluation_transform(tmp_path):
    root = write_folder(tmp_path / "photos", {"train": 5, "test": 1})
    splits = stream_splits(str(root), 16, "none", cache_dir=tmp_path / "cache")
    sample = decode_sample(splits.train, 6, seed=0, num_workers=2)
    assert sample.shape == (6, 16, 16, 3) and sample.dtype == np.uint8
    everything = np.stack([splits.train.load(i) for i in range(len(splits.train))])
    assert {image.tobytes() for image in sample} <= {image.tobytes() for image in everything}
    normalizer = fit_normalizer("channel", sample)
    assert normalizer.mean.flatten().tolist() == pytest.approx((sample / 255).mean(axis=(0, 1, 2)).tolist(), abs=1e-6)
