"""The streaming path: image files decoded as they are needed, in DataLoader worker processes, for folders of
any size (ImageNet: 1.28M JPEGs, ~190 GB decoded at 224 px).

Memory is bounded by the batch pipeline, not the dataset: each worker holds the batch it is decoding and
``prefetch`` finished ones wait in shared memory, as uint8 (B, H, W, 3) (a quarter of the float32 batches of a
typical pipeline). Normalisation and the optional device-side augmentation happen on the device, for the
whole batch, as in the in-memory path.

Batches follow the in-memory ``DeviceLoader``'s rules: the order of epoch e is a permutation drawn from
(seed, e), sharded over ranks like ``DistributedSampler`` (``loader.rank_indices``), and the random crop and
flip of image i in epoch e are drawn from (seed, e, i) alone, so they do not depend on the number of workers,
ranks or the batch size, and a resumed run sees the batches an uninterrupted one would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from resnetlab.data.augment import KerasAugment, augment, check_augmentation
from resnetlab.data.decode import _DECODE_ERRORS, default_workers
from resnetlab.data.listing import FolderListing
from resnetlab.data.loader import batch_layout, mix_seed, rank_indices
from resnetlab.data.messages import one_line
from resnetlab.data.normalize import Normalizer
from resnetlab.data.transforms import ImageTransform
from resnetlab.errors import DataError, UserError

Key = tuple[int, int]  # (image index, epoch)


class ImageFiles(torch.utils.data.Dataset):
    """Image files with labels, each decoded through ``transform`` when its batch is asked for.

    Indexed by (image index, epoch): the epoch seeds the image's random crop and flip. A file that cannot be
    decoded does not raise inside the worker (which would reach the user as a multi-line traceback): the batch
    comes back as an error message, which the loader raises as one DataError naming the file.
    """

    def __init__(self, root: Path, paths: np.ndarray, labels: np.ndarray, transform: ImageTransform,
                 seed: int = 0) -> None:
        self.root = Path(root)
        self.paths = paths
        self.labels = labels
        self.transform = transform
        self.seed = seed

    @classmethod
    def from_listing(cls, listing: FolderListing, split: str, transform: ImageTransform, seed: int = 0,
                     subset: np.ndarray | None = None) -> ImageFiles:
        paths, labels = listing.paths[split], listing.labels[split]
        if subset is not None:
            paths, labels = paths[subset], labels[subset]
        return cls(listing.root, paths, labels, transform, seed)

    def __len__(self) -> int:
        return len(self.labels)

    def file(self, index: int) -> Path:
        return self.root / self.paths[index].decode()

    def load(self, index: int, epoch: int = 0, out: np.ndarray | None = None) -> np.ndarray:
        """Image `index` as uint8 (size, size, 3) (into `out` when given), with the crop and flip of `epoch`
        when training."""
        rng = np.random.default_rng([self.seed, epoch, index]) if self.transform.train else None
        return load_image(self.file(index), self.transform, rng, out)

    def __getitem__(self, key: Key) -> tuple[np.ndarray, int]:
        index, epoch = key
        return self.load(index, epoch), int(self.labels[index])

    def __getitems__(self, keys: list[Key]) -> tuple[torch.Tensor, torch.Tensor] | str:
        """One batch: uint8 (B, size, size, 3) and int64 (B,), or the error message of the first bad file."""
        size = self.transform.size
        images = torch.empty((len(keys), size, size, 3), dtype=torch.uint8)
        out = images.numpy()
        for row, (index, epoch) in enumerate(keys):
            try:
                self.load(index, epoch, out=out[row])
            except DataError as err:
                return str(err)
        labels = torch.from_numpy(self.labels[[index for index, _ in keys]])
        return images, labels


def load_image(path: Path, transform: ImageTransform, rng: np.random.Generator | None = None,
               out: np.ndarray | None = None) -> np.ndarray:
    """One image file through `transform` (into `out` when given), or a DataError naming the file (truncated,
    not an image, a bomb)."""
    try:
        with Image.open(path) as image:
            return transform(image, rng, out)
    except _DECODE_ERRORS as err:
        raise DataError(f"cannot decode image {path}: {one_line(err)}; remove or replace that file") from err


def _checked(loader: torch.utils.data.DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The loader's batches, with a worker's error message raised here as one DataError."""
    for batch in loader:
        if isinstance(batch, str):
            raise DataError(batch)
        yield batch


def _as_batch(batch: tuple[torch.Tensor, torch.Tensor] | str) -> tuple[torch.Tensor, torch.Tensor] | str:
    """collate_fn: ``__getitems__`` already made the batch."""
    return batch


def decode_sample(files: ImageFiles, count: int, seed: int = 0, num_workers: int | None = None) -> np.ndarray:
    """Up to `count` images drawn without replacement, as uint8 (n, size, size, 3) (for fitting a normalizer)."""
    n = min(count, len(files))
    picks = np.sort(np.random.default_rng(seed).choice(len(files), size=n, replace=False))
    with ThreadPoolExecutor(max_workers=num_workers or default_workers()) as pool:  # Pillow releases the GIL
        return np.stack(list(pool.map(files.load, picks.tolist())))


class _EpochBatches:
    """The batch sampler of a ``StreamLoader``'s DataLoader: the (index, epoch) keys of the epoch being read.

    A DataLoader iterates its batch sampler in the main process each time it is iterated, so pointing ``keys``
    at the next epoch lets one DataLoader with persistent workers serve every epoch: the worker processes start
    once per run instead of once per epoch (and per evaluation)."""

    def __init__(self, keys: list[list[Key]]) -> None:
        self.keys = keys

    def __iter__(self) -> Iterator[list[Key]]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


class StreamLoader:
    """Batches of decoded files on the device, with the interface of ``DeviceLoader``.

    Args:
        files: the images and their transform (RandomResizedCrop + flip, or resize + centre crop).
        batch_size: images per batch on this rank.
        augmentation: device-side augmentation applied after the transform ("none", "crop_flip", "keras").
        num_workers: DataLoader worker processes, started once and kept for every epoch (0 decodes in this
            process; None: one per CPU).
        prefetch: finished batches each worker may keep waiting.
    """

    def __init__(self, files: ImageFiles, batch_size: int, *, device: torch.device | str = "cpu",
                 normalizer: Normalizer, augmentation: str | KerasAugment = "none", shuffle: bool = True,
                 drop_last: bool = True, seed: int = 0, channels_last: bool = False, rank: int = 0,
                 world_size: int = 1, num_workers: int | None = None, prefetch: int = 2) -> None:
        check_augmentation(augmentation)
        self.per_rank, self.num_batches = batch_layout(len(files), batch_size, rank, world_size, drop_last)
        self.files = files
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.normalizer = normalizer
        self.augmentation = augmentation
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.channels_last = channels_last
        self.rank = rank
        self.world_size = world_size
        self.num_workers = default_workers() if num_workers is None else num_workers
        self.prefetch = prefetch
        self._batches = _EpochBatches([])
        self._loader: torch.utils.data.DataLoader | None = None
        self._loader_busy = False

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        return self.num_batches

    @property
    def labels(self) -> np.ndarray:
        """The labels of all images of the split (as ``DeviceLoader.labels``, on the host)."""
        return self.files.labels

    def indices(self, epoch: int) -> torch.Tensor:
        """This rank's image indices for `epoch`, in batch order."""
        return rank_indices(len(self.files), epoch, seed=self.seed, shuffle=self.shuffle, per_rank=self.per_rank,
                            rank=self.rank, world_size=self.world_size, count=self.num_batches * self.batch_size)

    def host_batches(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (uint8 (B, size, size, 3), int64 (B,)) on the host for batches start_batch.. of `epoch`."""
        if not 0 <= start_batch <= self.num_batches:
            raise UserError(f"start batch {start_batch} is not in 0..{self.num_batches}")
        order = self.indices(epoch).tolist()
        keys = [[(index, epoch) for index in order[b * self.batch_size:(b + 1) * self.batch_size]]
                for b in range(start_batch, self.num_batches)]
        return self._host_batches(keys)

    def _host_batches(self, keys: list[list[Key]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if not keys:
            return
        if self._loader_busy:
            # another epoch of this loader is still being read (an unfinished generator): give this one its own
            # workers rather than re-pointing the shared sampler under the other reader
            yield from _checked(self._new_loader(_EpochBatches(keys), persistent=False))
            return
        if self._loader is None:
            self._loader = self._new_loader(self._batches, persistent=True)
        self._batches.keys = keys
        self._loader_busy = True
        try:
            yield from _checked(self._loader)
        finally:
            self._loader_busy = False

    def _new_loader(self, batches: _EpochBatches, persistent: bool) -> torch.utils.data.DataLoader:
        workers = min(self.num_workers, self.num_batches)
        return torch.utils.data.DataLoader(
            self.files, batch_sampler=batches, num_workers=workers, collate_fn=_as_batch,
            pin_memory=self.device.type == "cuda", prefetch_factor=self.prefetch if workers else None,
            persistent_workers=persistent and workers > 0)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (x float32 (B, 3, H, W), y int64 (B,)) on the device for batches start_batch.. of `epoch`."""
        batches = self.host_batches(epoch, start_batch)
        return self._device_batches(epoch, start_batch, batches)

    def _device_batches(self, epoch: int, start_batch: int, batches: Iterator[tuple[torch.Tensor, torch.Tensor]]
                        ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator(device=self.device)
        non_blocking = self.device.type == "cuda"
        for b, (images, labels) in enumerate(batches, start=start_batch):
            # (B, H, W, 3) viewed as (B, 3, H, W) is channels_last already: no copy on either side
            x = self.normalizer(images.to(self.device, non_blocking=non_blocking).permute(0, 3, 1, 2))
            if self.augmentation != "none":
                generator.manual_seed(mix_seed(self.seed, epoch, b, self.rank))
                x = augment(x, self.augmentation, generator)
            x = x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
            yield x, labels.to(self.device, non_blocking=non_blocking)
