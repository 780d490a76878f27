"""Per-image transforms of the streaming path: torchvision's ImageNet presets, done in one resize each.

The defaults are those of torchvision's `references/classification/presets.py` (``ClassificationPresetTrain``
and ``ClassificationPresetEval``, with ``train.py``'s ``--train-crop-size 224 --val-resize-size 256
--val-crop-size 224 --interpolation bilinear``): for training RandomResizedCrop(224, scale=(0.08, 1),
ratio=(3/4, 4/3)) + horizontal flip with p = 0.5, the scale augmentation of DRL section 3.4 in its Inception
form; for evaluation a resize of the shorter side to 256 and a centre crop of 224.

Three things make them cheaper than the reference without changing what they compute:
- for evaluation, the resize and the centre crop are one ``Image.resize(size, box=...)`` call, which evaluates
  the filter only at the output pixels (the reference resizes the whole image to 256, then crops). The filter's
  footprint is the same, so the pixels equal the reference's (see the tests); for training, the crop comes
  first, as in the reference, so that the filter sees no pixel outside it;
- a JPEG whose crop is at least twice the output size in both directions is decoded at 1/2, 1/4 or 1/8 of its
  size (``Image.draft``: libjpeg scales in the DCT, which skips most of the decoding work). The crop then still
  has at least as many pixels as the output, so the result is a downscale of the same region, not an upscale;
  the pixels differ from a full decode by a few levels (benchmarks/input_pipeline.py measures how many);
- a training crop of whole pixels is resized by torch's uint8 kernel for Pillow's filter (`resize_bilinear`),
  straight into its row of the batch, and flipped before the resize rather than after (the filter is
  symmetric): within 1 level of the reference, in a fifth of Pillow's resize time and with no copy.
Outputs are uint8 (size, size, 3) arrays; normalisation happens later, on the device, for a whole batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

# torchvision references/classification: train.py defaults and presets.py
TRAIN_CROP = 224
EVAL_RESIZE = 256
EVAL_CROP = 224
SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)
ATTEMPTS = 10
Box = tuple[float, float, float, float]  # left, top, right, bottom in pixels of the full image


def random_resized_crop_box(width: int, height: int, rng: np.random.Generator, scale: tuple[float, float] = SCALE,
                            ratio: tuple[float, float] = RATIO) -> tuple[int, int, int, int]:
    """(left, top, crop width, crop height), as torchvision's ``RandomResizedCrop.get_params`` draws it.

    Up to 10 tries of an area fraction uniform in ``scale`` and an aspect ratio log-uniform in ``ratio``; when
    none fits inside the image, the centre crop of the whole image clamped to the ratio bounds.
    """
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(ATTEMPTS):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return left, top, w, h
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def centre_crop_box(width: int, height: int, resize: int, crop: int) -> Box:
    """The region of the full image that ``Resize(resize)`` then ``CenterCrop(crop)`` keeps, in its pixels.

    torchvision resizes the shorter side to ``resize`` and the longer one to ``int(resize * long / short)``,
    then crops from ``int(round((side - crop) / 2))``; the box is that crop mapped back through the resize.
    """
    if width <= height:
        new_w, new_h = resize, int(resize * height / width)
    else:
        new_w, new_h = int(resize * width / height), resize
    top, left = int(round((new_h - crop) / 2.0)), int(round((new_w - crop) / 2.0))
    sx, sy = width / new_w, height / new_h
    return left * sx, top * sy, (left + crop) * sx, (top + crop) * sy


@dataclass(frozen=True)
class ImageTransform:
    """Decode one image file into a uint8 (size, size, 3) array: a random resized crop (+ flip) or a centre crop.

    Args:
        train: RandomResizedCrop + flip (True) or resize + centre crop (False).
        size: output side (train crop or eval crop).
        resize: evaluation only: the shorter side before the centre crop (256 for 224, as torchvision).
        flip: probability of a left-right flip (training).
        draft: decode JPEGs at a reduced scale when the crop allows it (see the module docstring).
    """

    train: bool
    size: int = TRAIN_CROP
    resize: int = EVAL_RESIZE
    scale: tuple[float, float] = SCALE
    ratio: tuple[float, float] = RATIO
    flip: float = 0.5
    draft: bool = True

    @classmethod
    def for_eval(cls, size: int = EVAL_CROP, resize: int | None = None, draft: bool = True) -> ImageTransform:
        """Resize + centre crop; ``resize`` defaults to the reference's ratio 256/224 of the crop."""
        return cls(train=False, size=size, resize=resize or round(size * EVAL_RESIZE / EVAL_CROP), draft=draft)

    def box(self, width: int, height: int, rng: np.random.Generator | None) -> tuple[Box, bool]:
        """The source region of the output and whether to flip it."""
        if not self.train:
            return centre_crop_box(width, height, self.resize, self.size), False
        if rng is None:
            raise ValueError("a training transform needs a random generator")
        left, top, w, h = random_resized_crop_box(width, height, rng, self.scale, self.ratio)
        return (left, top, left + w, top + h), bool(rng.random() < self.flip)

    def __call__(self, image: Image.Image, rng: np.random.Generator | None = None,
                 out: np.ndarray | None = None) -> np.ndarray:
        """Transform an opened (not yet decoded) image into uint8 (size, size, 3): `out` when given (a row of a
        batch: the resize writes there, no copy), else a new array."""
        width, height = image.size
        (left, top, right, bottom), flip = self.box(width, height, rng)
        if self.draft and image.format == "JPEG":
            fits = min(right - left, bottom - top) / self.size  # how many times the crop holds the output
            reduction = next((s for s in (8, 4, 2) if fits >= s), 1)
            if reduction > 1:
                image.draft("RGB", (width // reduction, height // reduction))  # Pillow picks this scale
                sx, sy = image.size[0] / width, image.size[1] / height
                left, top, right, bottom = left * sx, top * sy, right * sx, bottom * sy
        image = to_rgb(image)
        out = np.empty((self.size, self.size, 3), dtype=np.uint8) if out is None else out
        if self.train:  # torchvision crops, then resizes: the filter sees no pixel outside the crop
            outer = (math.floor(left), math.floor(top), math.ceil(right), math.ceil(bottom))
            image = image.crop(outer)
            left, top, right, bottom = left - outer[0], top - outer[1], right - outer[0], bottom - outer[1]
            if flip:  # the crop is mirrored before the resize, whose filter is symmetric: within 1 level
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                left, right = image.size[0] - right, image.size[0] - left
        if self.train and (left, top, right, bottom) == (0, 0, *image.size):  # whole pixels: torch's kernel
            resize_bilinear(np.array(image), out)  # a writable copy, which torch can view
        else:
            box = (left, top, right, bottom)
            out[...] = np.asarray(image.resize((self.size, self.size), Image.Resampling.BILINEAR, box=box))
        return out


def resize_bilinear(pixels: np.ndarray, out: np.ndarray) -> None:
    """Resize uint8 (h, w, 3) `pixels` into uint8 (H, W, 3) `out`: bilinear with antialias, Pillow's filter.

    torch's uint8 antialiased bilinear kernel for channels-last images (the one torchvision's tensor transforms
    use) computes Pillow's triangle filter with the same support in fixed point, with other rounding: the
    pixels equal Pillow's within 1 level (tests). Written straight into the (1, 3, H, W) channels-last view of
    `out`, it takes about a fifth of Pillow's time on an AVX2 CPU (0.23 against 1.25 ms for a 300 x 280 crop
    to 224, one thread); ``F.interpolate`` would return channels-first pixels that cost as much again to
    interleave.
    """
    source = torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0)  # a channels-last view, no copy
    target = torch.from_numpy(out).permute(2, 0, 1).unsqueeze(0)
    torch.ops.aten._upsample_bilinear2d_aa.out(source, list(out.shape[:2]), False, None, None, out=target)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, by the route Pillow asks for (palette images with transparency go through RGBA)."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image if image.mode == "RGB" else image.convert("RGB")
