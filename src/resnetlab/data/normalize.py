"""Input normalization fitted on the training split, applied on the device to uint8 batches.

"pixel_mean" is the paper's per-pixel mean subtraction (He et al. 2015, sec. 4.2) and the Keras tutorial's
`subtract_pixel_mean`: x/255 minus the mean training image. "channel" is per-channel mean/std on x/255;
"imagenet" is the same with ImageNet's fixed statistics (those of torchvision's references and pretrained
weights, which a fine-tuned torchvision model expects); "none" is x/255.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from resnetlab.errors import UserError

NORMALIZATIONS = ("pixel_mean", "channel", "imagenet", "none")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_CHUNK = 4096
_PERIOD = 48  # values per row of the channels-last fast path: 16 RGB pixels, a whole number of SIMD vectors


@dataclass(eq=False)  # tensors have no single truth value; compare state_dict() entries instead
class Normalizer:
    """Maps uint8 NCHW batches to float32: (x/255 - mean) / std, with mean and std on the 0..1 scale."""

    kind: str
    mean: torch.Tensor
    std: torch.Tensor
    _on_device: dict[tuple[torch.device, int], tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.kind not in NORMALIZATIONS:
            raise UserError(f"unknown normalization {self.kind!r}; choose one of {', '.join(NORMALIZATIONS)}")
        self.mean = self.mean.detach().to(torch.float32).cpu()
        self.std = self.std.detach().to(torch.float32).cpu()

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Normalize uint8 (N, 3, H, W) images on their own device."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise UserError(f"expected uint8 images of shape (N, 3, H, W), got {tuple(images.shape)}")
        if self.kind == "pixel_mean" and images.shape[2:] != self.mean.shape[1:]:
            raise UserError(
                f"the pixel-mean normalizer was fitted on {tuple(self.mean.shape[1:])} images, "
                f"got {tuple(images.shape[2:])}"
            )
        x = images.to(torch.float32).div_(255.0)
        if self.kind == "none":
            return x
        if self.kind != "pixel_mean" and _interleaved(x):
            x_rows, mean, std = x.permute(0, 2, 3, 1).view(-1, _PERIOD), *self._tensors(images.device, _PERIOD)
            x_rows.sub_(mean).div_(std)  # the same operations on the same values, in rows of 16 pixels
            return x
        mean, std = self._tensors(images.device)
        x.sub_(mean)
        return x if self.kind == "pixel_mean" else x.div_(std)  # channel and imagenet

    def state_dict(self) -> dict[str, torch.Tensor | str]:
        """What a checkpoint needs to rebuild this normalizer (see `from_state_dict`)."""
        return {"kind": self.kind, "mean": self.mean.clone(), "std": self.std.clone()}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor | str]) -> Normalizer:
        """Rebuild a normalizer saved with `state_dict`."""
        try:
            return cls(kind=str(state["kind"]), mean=torch.as_tensor(state["mean"]), std=torch.as_tensor(state["std"]))
        except KeyError as err:
            raise UserError(f"normalizer state lacks the {err.args[0]!r} entry") from err

    def _tensors(self, device: torch.device, period: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """mean and std on `device`; with a period, per channel repeated as R, G, B, R, ... to that length."""
        if (device, period) not in self._on_device:
            mean, std = self.mean.to(device), self.std.to(device)
            if period:
                mean, std = mean.flatten().repeat(period // 3), std.flatten().repeat(period // 3)
            self._on_device[device, period] = (mean, std)
        return self._on_device[device, period]


def _interleaved(x: torch.Tensor) -> bool:
    """Whether x (N, 3, H, W) lies in memory as N*H*W pixels of R, G, B (channels-last) in whole rows of
    `_PERIOD` values. A (1, 3, 1, 1) mean broadcast over such a tensor walks it with an inner loop of 3 values,
    which on a CPU is about 5x slower than rows of 48 with a matching repeated mean (20 against 4 ms for a
    64 x 224 x 224 batch, one thread); streamed batches arrive in this layout."""
    return (x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
            and x.numel() % _PERIOD == 0 and x.device.type == "cpu")


def fit_normalizer(kind: str, train_images: np.ndarray) -> Normalizer:
    """Fit on uint8 (N, H, W, 3) training images: pass the split left after holding out validation, so that
    neither validation nor test images leak into the statistics."""
    if kind not in NORMALIZATIONS:
        raise UserError(f"unknown normalization {kind!r}; choose one of {', '.join(NORMALIZATIONS)}")
    if train_images.ndim != 4 or train_images.shape[-1] != 3 or len(train_images) == 0:
        raise UserError(f"expected uint8 images of shape (N, H, W, 3) with N > 0, got {train_images.shape}")
    n, h, w, _ = train_images.shape
    if kind == "none":
        return Normalizer(kind, torch.zeros(3, 1, 1), torch.ones(3, 1, 1))
    if kind == "imagenet":
        return Normalizer(kind, torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1))
    # Sums in float64, a chunk at a time: exact enough and never a float copy of the whole set.
    total = np.zeros((h, w, 3), dtype=np.float64)
    squares = np.zeros(3, dtype=np.float64)
    for start in range(0, n, _CHUNK):
        chunk = train_images[start : start + _CHUNK].astype(np.float64) / 255.0
        total += chunk.sum(axis=0)
        if kind == "channel":
            squares += np.square(chunk).sum(axis=(0, 1, 2))
    pixel_mean = total / n
    if kind == "pixel_mean":
        return Normalizer(kind, torch.from_numpy(pixel_mean.transpose(2, 0, 1).astype(np.float32)), torch.ones(3, 1, 1))
    mean = pixel_mean.mean(axis=(0, 1))
    std = np.sqrt(np.maximum(squares / (n * h * w) - mean**2, 0.0))
    std = np.where(std > 0, std, 1.0)  # a constant channel stays as it is instead of dividing by zero
    return Normalizer(
        kind,
        torch.from_numpy(mean.astype(np.float32)).view(3, 1, 1),
        torch.from_numpy(std.astype(np.float32)).view(3, 1, 1),
    )
