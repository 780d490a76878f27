"""Training-time augmentation as batched tensor ops on the device: no per-image Python loop.

"crop_flip" is the paper's (He et al. 2015, sec. 4.2): pad 4 pixels of zeros on each side, take a random
crop of the original size, flip horizontally with probability 1/2. "keras" is the tutorial's
ImageDataGenerator (keras/examples/cifar10_resnet.py): random shifts of up to 10% of the width and height,
horizontal flips, no rotation, and 'nearest' fill, done here as one affine warp of the whole batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from resnetlab.errors import UserError

AUGMENTATIONS = ("none", "crop_flip", "keras")
CROP_PAD = 4


@dataclass(frozen=True)
class KerasAugment:
    """ImageDataGenerator settings; the defaults are those of the Keras cifar10_resnet.py tutorial."""

    rotation_range: float = 0.0
    """Maximum rotation in degrees, drawn uniformly in [-range, range]."""
    width_shift_range: float = 0.1
    """Maximum horizontal shift as a fraction of the width (continuous, so shifts are sub-pixel)."""
    height_shift_range: float = 0.1
    """Maximum vertical shift as a fraction of the height."""
    horizontal_flip: bool = True
    """Flip left-right with probability 1/2."""
    vertical_flip: bool = False
    """Flip upside-down with probability 1/2."""


def check_augmentation(kind: str | KerasAugment) -> None:
    """Raise UserError for an unknown augmentation, before any training starts."""
    if not isinstance(kind, KerasAugment) and kind not in AUGMENTATIONS:
        raise UserError(f"unknown augmentation {kind!r}; choose one of {', '.join(AUGMENTATIONS)}")


def augment(images: torch.Tensor, kind: str | KerasAugment, generator: torch.Generator) -> torch.Tensor:
    """Augment a float (N, C, H, W) batch; all randomness comes from `generator`, on the batch's device.

    `kind` is "none", "crop_flip", "keras" (tutorial settings), or a KerasAugment with other settings.
    """
    check_augmentation(kind)
    if isinstance(kind, KerasAugment):
        return keras_augment(images, generator, kind)
    if kind == "crop_flip":
        return crop_flip(images, generator)
    if kind == "keras":
        return keras_augment(images, generator, KerasAugment())
    return images


def crop_flip(images: torch.Tensor, generator: torch.Generator, pad: int = CROP_PAD) -> torch.Tensor:
    """Random crops of the zero-padded batch, each flipped left-right with probability 1/2, in one gather."""
    n, c, h, w = images.shape
    dev = images.device
    dy = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator, device=dev)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator, device=dev)
    flip = torch.rand((n, 1), generator=generator, device=dev) < 0.5
    cols = torch.arange(w, device=dev)
    cols = torch.where(flip, w - 1 - cols, cols) + dx  # (n, w): source column of each output column
    rows = torch.arange(h, device=dev) + dy  # (n, h)
    padded_w = w + 2 * pad
    index = (rows[:, :, None] * padded_w + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    padded = F.pad(images, (pad, pad, pad, pad)).flatten(2)
    return padded.gather(2, index).view(n, c, h, w)


def keras_augment(images: torch.Tensor, generator: torch.Generator, settings: KerasAugment) -> torch.Tensor:
    """Draw each image's rotation, shift and flips as Keras does, then warp the batch once."""
    n = images.shape[0]
    dev = images.device

    def uniform(limit: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator, device=dev) * 2 - 1) * limit

    def coin(enabled: bool) -> torch.Tensor:
        draw = torch.rand(n, generator=generator, device=dev) < 0.5
        return draw & enabled

    _, _, h, w = images.shape
    return affine_warp(
        images,
        angle_deg=uniform(settings.rotation_range),
        shift_x=uniform(settings.width_shift_range) * w,
        shift_y=uniform(settings.height_shift_range) * h,
        flip_x=coin(settings.horizontal_flip),
        flip_y=coin(settings.vertical_flip),
    )


def affine_warp(
    images: torch.Tensor,
    angle_deg: torch.Tensor,
    shift_x: torch.Tensor,
    shift_y: torch.Tensor,
    flip_x: torch.Tensor,
    flip_y: torch.Tensor,
) -> torch.Tensor:
    """Rotate about the centre, shift (in pixels) and flip each image, all (N,) parameters, in one grid_sample.

    Output pixel p reads input pixel R·F·p + t (about the centre, F the flips), interpolated bilinearly
    (Keras' interpolation_order=1); points outside repeat the nearest edge pixel (Keras' fill_mode='nearest').
    """
    n, _, h, w = images.shape
    dtype = images.dtype if images.is_floating_point() else torch.float32
    angle = angle_deg.to(dtype) * (math.pi / 180)
    cos, sin = torch.cos(angle), torch.sin(angle)
    fx = 1 - 2 * flip_x.to(dtype)
    fy = 1 - 2 * flip_y.to(dtype)
    # grid_sample's coordinates run from -1 to 1 across each axis, so a rotation in pixels becomes
    # S·R·S⁻¹ with S = diag(2/w, 2/h), and a shift of t pixels becomes 2t/w (or 2t/h).
    theta = torch.stack(
        [
            torch.stack([cos * fx, -sin * (h / w) * fy, shift_x.to(dtype) * (2 / w)], dim=1),
            torch.stack([sin * (w / h) * fx, cos * fy, shift_y.to(dtype) * (2 / h)], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
