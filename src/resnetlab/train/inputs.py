"""The training run's inputs: the data path the config and dataset call for (in memory or streamed), its
normalizer, and the loaders of the training, validation and test splits."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from resnetlab.data import DeviceLoader, KerasAugment, Normalizer, fit_normalizer, load_dataset, split_validation
from resnetlab.data.decode import default_workers
from resnetlab.data.loader import SharedData
from resnetlab.data.sources import DATA_ENV
from resnetlab.data.pipeline import STREAM_AUGMENTATIONS, choose_pipeline, stream_splits
from resnetlab.data.stream import ImageFiles, StreamLoader, decode_sample
from resnetlab.errors import UserError
from resnetlab.train.config import TrainConfig
from resnetlab.train.distributed import Distributed

EVAL_BATCH_SIZE = 500
Loader = DeviceLoader | StreamLoader
NORMALIZER_SAMPLE = 1000  # streamed training images a fitted normalizer ("channel", "pixel_mean") looks at


@dataclass
class Inputs:
    normalizer: Normalizer
    classes: list[str]
    train: Loader
    evaluation: dict[str, Loader]  # "val" (when held out) and "test"


def pipeline_metadata(evaluation: dict[str, Loader]) -> dict[str, Any]:
    """What eval and predict need (checkpoint metadata) to prepare images the way this run's evaluation did."""
    loader = next(iter(evaluation.values()), None)
    if not isinstance(loader, StreamLoader):
        return {"pipeline": "memory"}
    transform = loader.files.transform
    return {"pipeline": "stream", "eval_resize": transform.resize, "eval_crop": transform.size}


def stream_workers(requested: int, dist: Distributed) -> int:
    """DataLoader workers per process: as asked, else this machine's CPUs shared by its training processes."""
    if requested >= 0:
        return requested
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, default_workers() // max(1, local_processes))


def augmentation(config: TrainConfig) -> str | KerasAugment:
    """The device augmentation: "keras" carries the recipe's ImageDataGenerator ranges."""
    if config.augmentation != "keras":
        return config.augmentation
    return KerasAugment(config.rotation_range, config.width_shift_range, config.height_shift_range)


def build_inputs(config: TrainConfig, device: torch.device, dist: Distributed, batch_per_process: int,
                 channels_last: bool, normalizer_state: dict | None, log: Callable[[str], None] | None,
                 shared: SharedData | None = None) -> Inputs:
    """Load (or list) the data and make the loaders; `normalizer_state` is a resumed run's normalizer, `shared`
    the data of runs trained side by side in one process (train/concurrent.py; the in-memory path)."""
    source = config.data or os.environ.get(DATA_ENV, "")
    pipeline = choose_pipeline(config.data_pipeline, source, config.image_size, config.augmentation)
    common = dict(device=device, channels_last=channels_last)
    shard = dict(shuffle=True, drop_last=config.drop_last, seed=config.seed, rank=dist.rank,
                 world_size=dist.world_size)
    if pipeline == "memory":
        data, resize = config.data or None, not config.strict_image_size
        dataset = (shared.dataset(data, config.image_size, resize, config.val_split, config.seed, log) if shared
                   else split_validation(load_dataset(data, image_size=config.image_size, resize=resize, report=log),
                                         config.val_split, seed=config.seed))
        normalizer = (Normalizer.from_state_dict(normalizer_state) if normalizer_state
                      else fit_normalizer(config.normalization, dataset.train.images))
        cache = dict(device_cache=shared.tensors if shared else None)
        train = DeviceLoader(dataset.train, batch_per_process, augmentation=augmentation(config),
                             normalizer=normalizer, **shard, **common, **cache)
        evaluation = {split: DeviceLoader(arrays, EVAL_BATCH_SIZE, shuffle=False, drop_last=False,
                                          normalizer=normalizer, **common, **cache)
                      for split, arrays in (("val", dataset.val), ("test", dataset.test)) if arrays is not None}
        return Inputs(normalizer, dataset.classes, train, evaluation)

    if config.strict_image_size:
        raise UserError("--strict-size checks the sizes of images held in memory; this folder streams (each image "
                        "is cropped and resized as it is read), so nothing would be checked: drop --strict-size, "
                        "or hold the images in memory with --data-pipeline memory --augmentation crop_flip")
    splits = stream_splits(source, config.image_size, config.augmentation, config.val_split, config.seed)
    if log:
        log(f"data: {splits.listing.root}, streamed ({len(splits.train)} training images decoded per batch, "
            f"{'RandomResizedCrop + flip' if splits.train.transform.train else 'resize + centre crop'} at "
            f"{config.image_size} px)")
    if normalizer_state:
        normalizer = Normalizer.from_state_dict(normalizer_state)
    elif config.normalization in ("imagenet", "none"):
        normalizer = fit_normalizer(config.normalization, np.zeros((1, 1, 1, 3), dtype=np.uint8))
    else:  # fitted on a sample of training images through the evaluation transform
        sample = ImageFiles(splits.train.root, splits.train.paths, splits.train.labels, splits.test.transform)
        normalizer = fit_normalizer(config.normalization, decode_sample(sample, NORMALIZER_SAMPLE, config.seed))
    workers = stream_workers(config.data_workers, dist)
    device_augmentation = "none" if config.augmentation in STREAM_AUGMENTATIONS else augmentation(config)
    train = StreamLoader(splits.train, batch_per_process, augmentation=device_augmentation, normalizer=normalizer,
                         num_workers=workers, **shard, **common)
    # evaluation batches of the training size: a streamed model is large (ImageNet ResNets) and so are its images
    evaluation = {split: StreamLoader(files, batch_per_process, shuffle=False, drop_last=False, normalizer=normalizer,
                                      num_workers=workers, **common)
                  for split, files in (("val", splits.val), ("test", splits.test)) if files is not None}
    return Inputs(normalizer, splits.classes, train, evaluation)
