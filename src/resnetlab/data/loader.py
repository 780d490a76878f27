"""Batches straight from device memory: no worker processes, no host-to-device copy per batch.

Reproducibility is by construction: the order of epoch e is a permutation drawn from (seed, e) alone, and the
augmentation of batch b from (seed, e, b, rank) alone. A run resumed at (e, b) therefore sees exactly the
batches it would have seen, without replaying the ones before b.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import torch

from resnetlab.data.arrays import Dataset, ImageArrays, split_validation
from resnetlab.data.augment import KerasAugment, augment, check_augmentation
from resnetlab.data.normalize import Normalizer
from resnetlab.errors import DataError, UserError


def mix_seed(*values: int) -> int:
    """A well-spread 63-bit seed from a tuple of integers (NumPy's SeedSequence hashing)."""
    words = np.random.SeedSequence([v % 2**64 for v in values]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def rank_indices(n: int, epoch: int, *, seed: int, shuffle: bool, per_rank: int, rank: int, world_size: int,
                 count: int) -> torch.Tensor:
    """The first `count` of this rank's `per_rank` indices into `n` images for `epoch`, DistributedSampler-style:
    one global permutation drawn from (seed, epoch), wrapped around when the ranks need more than `n`, and
    rank r taking positions r, r + world_size, ..."""
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(seed, epoch)))
    else:
        order = torch.arange(n)
    total = per_rank * world_size
    if total > n:  # no drop_last: wrap around so that every rank gets per_rank indices
        order = order.repeat(math.ceil(total / n))
    return order[:total][rank::world_size][:count]



def batch_layout(n: int, batch_size: int, rank: int, world_size: int, drop_last: bool) -> tuple[int, int]:
    """(images per rank, batches per epoch on a rank) of a split of ``n`` images; bad sizes and ranks refused."""
    if batch_size < 1:
        raise UserError(f"batch size must be positive, got {batch_size}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise UserError(f"rank {rank} is not in 0..{world_size - 1} (world size {world_size})")
    if n == 0:
        raise DataError("cannot serve batches from an empty split")
    per_rank = n // world_size if drop_last else math.ceil(n / world_size)
    num_batches = per_rank // batch_size if drop_last else math.ceil(per_rank / batch_size)
    if num_batches == 0:
        raise DataError(f"batch size {batch_size} is larger than the {per_rank} images per rank "
                        f"({n} images, world size {world_size}) and drop_last is set: no batch would be left")
    return per_rank, num_batches

class DeviceLoader:
    """The whole split lives on the device as uint8 NCHW; each batch is gathered, normalized and augmented there.

    With world_size > 1 every rank takes the slice rank::world_size of the same global permutation, cut to the
    same length on every rank: with drop_last the remainder is dropped, without it the permutation wraps around
    (as torch's DistributedSampler does), so a few images appear twice in that epoch. `batch_size` is per rank.
    """

    def __init__(
        self,
        arrays: ImageArrays,
        batch_size: int,
        *,
        device: torch.device | str = "cpu",
        normalizer: Normalizer,
        augmentation: str | KerasAugment = "none",
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
        channels_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        device_cache: dict | None = None,
    ) -> None:
        """``device_cache``: split arrays already placed on the device, by the identity of ``arrays``
        (``SharedData.tensors``): runs trained side by side then hold one copy of a split they share."""
        check_augmentation(augmentation)
        self.per_rank, self.num_batches = batch_layout(len(arrays), batch_size, rank, world_size, drop_last)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.normalizer = normalizer
        self.augmentation = augmentation
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.channels_last = channels_last
        self.rank = rank
        self.world_size = world_size
        cache = {} if device_cache is None else device_cache
        key = (id(arrays), str(self.device))
        if key not in cache:  # the arrays are kept with their tensors, so that their id stays theirs
            images = torch.from_numpy(np.ascontiguousarray(arrays.images))
            cache[key] = (arrays, images.to(self.device).permute(0, 3, 1, 2).contiguous(),
                          torch.from_numpy(np.ascontiguousarray(arrays.labels)).to(self.device))
        _, self.images, self.labels = cache[key]

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        return self.num_batches

    def indices(self, epoch: int) -> torch.Tensor:
        """This rank's image indices for `epoch`, in batch order (on the CPU)."""
        return rank_indices(len(self.labels), epoch, seed=self.seed, shuffle=self.shuffle, per_rank=self.per_rank,
                            rank=self.rank, world_size=self.world_size, count=self.num_batches * self.batch_size)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (x float32 (B, 3, H, W), y int64 (B,)) on the device for batches start_batch.. of `epoch`."""
        if not 0 <= start_batch <= self.num_batches:
            raise UserError(f"start batch {start_batch} is not in 0..{self.num_batches}")
        return self._batches(epoch, start_batch)

    def _batches(self, epoch: int, start_batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.indices(epoch).to(self.device)
        generator = torch.Generator(device=self.device)
        for b in range(start_batch, self.num_batches):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            x = self.normalizer(self.images[idx])
            if self.augmentation != "none":
                generator.manual_seed(mix_seed(self.seed, epoch, b, self.rank))
                x = augment(x, self.augmentation, generator)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]


class SharedData:
    """Datasets loaded once, each (validation size, seed) split made once, and each split placed on the device
    once, for runs trained side by side in one process. Runs of one seed share every split; the paper's 45k/5k
    split is drawn from the seed, so runs of different seeds share the test split only."""

    def __init__(self) -> None:
        self.datasets: dict[tuple, Dataset] = {}
        self.tensors: dict = {}  # DeviceLoader's device_cache

    def dataset(self, source: str | None, image_size: int, resize: bool, val_split: int, seed: int,
                report: Callable[[str], None] | None = None) -> Dataset:
        from resnetlab.data.sources import load_dataset

        loaded = (source, image_size, resize)
        if loaded not in self.datasets:
            self.datasets[loaded] = load_dataset(source, image_size=image_size, resize=resize, report=report)
        split = (*loaded, val_split, seed)
        if split not in self.datasets:
            self.datasets[split] = split_validation(self.datasets[loaded], val_split, seed=seed)
        return self.datasets[split]
