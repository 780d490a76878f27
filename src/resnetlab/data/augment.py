"""Training-time augmentation as batched tensor ops on the device: no per-image Python loop.

"crop_flip" is the paper's (He et al. 2015, sec. 4.2): pad 4 pixels of zeros on each side, take a random
crop of the original size, flip horizontally with probability 1/2. "keras" is Keras' ImageDataGenerator with
rotation, width/height shifts and flips, composed as ``ImageDataGenerator.get_random_transform`` draws them and
``apply_transform`` / ``apply_affine_transform`` apply them (keras/src/legacy/preprocessing/image.py, Keras 3;
the same code as keras-preprocessing): one affine about the image centre, linear interpolation, 'nearest' fill,
then the flips. Here the whole batch is warped by one ``grid_sample``; ``tests/fixtures/keras`` checks it
against Keras' own outputs.
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
    """ImageDataGenerator settings; the defaults are the Keras ResNet tutorial's
    ``ImageDataGenerator(rotation_range=20, width_shift_range=0.2, height_shift_range=0.2, horizontal_flip=True,
    fill_mode='nearest')``. ``KERAS_EXAMPLE`` holds the 2020 ``cifar10_resnet.py`` example's (shifts 0.1, no
    rotation)."""

    rotation_range: float = 20.0
    """Maximum rotation in degrees, drawn uniformly in [-range, range]."""
    width_shift_range: float = 0.2
    """Maximum shift as a fraction of the width, drawn uniformly (fractional, so shifts are sub-pixel)."""
    height_shift_range: float = 0.2
    """Maximum shift as a fraction of the height."""
    horizontal_flip: bool = True
    """Flip left-right with probability 1/2."""
    vertical_flip: bool = False
    """Flip upside-down with probability 1/2."""


KERAS_EXAMPLE = KerasAugment(rotation_range=0.0, width_shift_range=0.1, height_shift_range=0.1)


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


def resize_batch(images: torch.Tensor, side: int) -> torch.Tensor:
    """A float (N, C, H, W) batch resized to side x side (antialiased bilinear), in its memory format.

    Progressive resizing trains the first epochs on smaller images, which cost less per step (ResNet-20 on 2
    CPU cores: 16 px trains 3.5x, 24 px 1.9x as many images per second as 32 px), as fast.ai's
    DAWNBench entries and FFCV's ImageNet configs do; the last epochs at the full size adapt the net to the
    size it is evaluated at (Touvron et al. 2019, "Fixing the train-test resolution discrepancy").
    """
    if images.shape[-2:] == (side, side):
        return images
    channels_last = images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous()
    out = F.interpolate(images, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    return out.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


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
    """Draw each image's parameters as ``get_random_transform`` does, in its order, then warp the batch once.

    Keras draws, per image: theta (only if rotation_range), tx = uniform(-height_shift_range, +) * rows (only if
    height_shift_range), ty = uniform(-width_shift_range, +) * cols (only if width_shift_range), then the two
    coins ``random() < 0.5`` for the horizontal and vertical flips (both always drawn). Here each draw is one
    vector over the batch, in the same order, from ``generator``.
    """
    n, _, h, w = images.shape
    dev = images.device

    def uniform(limit: float) -> torch.Tensor:
        if not limit:
            return torch.zeros(n, device=dev)
        return (torch.rand(n, generator=generator, device=dev) * 2 - 1) * limit

    theta = uniform(settings.rotation_range)
    tx = uniform(settings.height_shift_range) * h
    ty = uniform(settings.width_shift_range) * w
    flip_h = (torch.rand(n, generator=generator, device=dev) < 0.5) & settings.horizontal_flip
    flip_v = (torch.rand(n, generator=generator, device=dev) < 0.5) & settings.vertical_flip
    return keras_apply_transform(images, theta, tx, ty, flip_h, flip_v)


def keras_apply_transform(
    images: torch.Tensor,
    theta: torch.Tensor,
    tx: torch.Tensor,
    ty: torch.Tensor,
    flip_horizontal: torch.Tensor,
    flip_vertical: torch.Tensor,
) -> torch.Tensor:
    """``ImageDataGenerator.apply_transform`` for a (N, C, H, W) batch and (N,) parameters, in Keras' names.

    Keras builds ``M = R(theta) @ T(tx, ty)`` in coordinates (u, v), moves it about the centre
    (``transform_matrix_offset_center(M, h, w)``: offsets h/2 - 0.5 for u and w/2 - 0.5 for v), swaps the axes
    for channels-last arrays (``M' = P M P``: u becomes the column, v the row, so ``tx`` moves the image
    horizontally), and calls ``scipy.ndimage.affine_transform(channel, M'[:2, :2], M'[:2, 2], order=1,
    mode='nearest')``: output pixel (r, c) reads input (r, c)_in = A (r, c) + b, interpolated linearly, with
    coordinates outside clamped to the edge. The flips are applied afterwards, to the warped image. Here the
    same source coordinates go to one ``grid_sample`` (bilinear, border padding = 'nearest' fill).
    """
    n, _, h, w = images.shape
    dtype = images.dtype if images.is_floating_point() else torch.float32
    dev = images.device
    angle = theta.to(torch.float64) * (math.pi / 180)
    cos, sin = torch.cos(angle), torch.sin(angle)
    tx, ty = tx.to(torch.float64), ty.to(torch.float64)
    o_u, o_v = h / 2 - 0.5, w / 2 - 0.5
    # M = R T about the centre: (u, v)_in = R ((u, v) - o + t) + o.
    m00, m01, m10, m11 = cos, -sin, sin, cos
    b_u = m00 * (tx - o_u) + m01 * (ty - o_v) + o_u
    b_v = m10 * (tx - o_u) + m11 * (ty - o_v) + o_v
    # After the swap: row_in = m11 row + m10 col + b_v, col_in = m01 row + m00 col + b_u.
    rows = torch.arange(h, device=dev, dtype=torch.float64).view(1, h, 1)
    cols = torch.arange(w, device=dev, dtype=torch.float64).view(1, 1, w)
    rows = torch.where(flip_vertical.view(n, 1, 1), (h - 1) - rows, rows)  # the flips act on the output
    cols = torch.where(flip_horizontal.view(n, 1, 1), (w - 1) - cols, cols)

    def per_image(value: torch.Tensor) -> torch.Tensor:
        return value.view(n, 1, 1)

    row_in = per_image(m11) * rows + per_image(m10) * cols + per_image(b_v)
    col_in = per_image(m01) * rows + per_image(m00) * cols + per_image(b_u)
    # grid_sample's coordinates (align_corners=False): -1 and 1 are the outer edges of the first and last pixel.
    grid = torch.stack([(2 * col_in + 1) / w - 1, (2 * row_in + 1) / h - 1], dim=-1).to(dtype)
    return F.grid_sample(images.to(dtype), grid, mode="bilinear", padding_mode="border", align_corners=False)
