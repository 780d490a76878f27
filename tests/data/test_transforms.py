"""The streaming path's per-image transforms against their definitions (torchvision's ImageNet presets)."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from resnetlab.data.transforms import ImageTransform, centre_crop_box, random_resized_crop_box


def image(width: int, height: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def smooth_jpeg(width: int, height: int) -> Image.Image:
    """A photo-like JPEG (smooth gradients, some texture), opened but not decoded."""
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([128 + 100 * np.sin(x / 37), 128 + 100 * np.cos(y / 23), (x + y) % 256], axis=-1)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="JPEG", quality=95)
    buffer.seek(0)
    return Image.open(buffer)


@pytest.mark.parametrize("size", [(500, 375), (375, 500), (64, 64), (300, 120)])
def test_random_resized_crop_stays_within_scale_and_ratio(size):
    width, height = size
    rng = np.random.default_rng(0)
    for _ in range(2000):
        left, top, w, h = random_resized_crop_box(width, height, rng)
        assert 0 <= left and left + w <= width and 0 <= top and top + h <= height
        # rounding the sides to whole pixels moves the area and the ratio by at most half a pixel per side
        assert 0.08 * width * height <= (w + 1) * (h + 1) and (w - 1) * (h - 1) <= width * height
        assert 3 / 4 <= (w + 0.5) / (h - 0.5) and (w - 0.5) / (h + 0.5) <= 4 / 3 or (w, h) == (width, height)


def test_random_resized_crop_covers_the_whole_scale_range():
    rng = np.random.default_rng(1)
    fractions = [w * h / (500 * 500) for _, _, w, h in (random_resized_crop_box(500, 500, rng) for _ in range(4000))]
    assert min(fractions) < 0.1 and max(fractions) > 0.95
    narrow = [w * h / 250000 for _, _, w, h in (random_resized_crop_box(500, 500, rng, scale=(0.2, 0.3))
                                                for _ in range(500))]
    assert 0.19 < min(narrow) and max(narrow) < 0.31


def test_random_resized_crop_falls_back_to_a_centre_crop_clamped_to_the_ratio():
    rng = np.random.default_rng(0)
    # an area fraction above 1 never fits: all 10 attempts fail, as torchvision's would
    assert random_resized_crop_box(400, 100, rng, scale=(1.5, 2.0)) == (133, 0, 133, 100)  # w = round(100 * 4/3)
    assert random_resized_crop_box(100, 400, rng, scale=(1.5, 2.0)) == (0, 133, 100, 133)  # h = round(100 / (3/4))
    assert random_resized_crop_box(300, 260, rng, scale=(1.5, 2.0)) == (0, 0, 300, 260)  # ratio within bounds


def test_centre_crop_is_exact_when_no_resize_is_needed():
    pixels = image(300, 256)  # the shorter side is already 256: Resize(256) is the identity
    out = ImageTransform.for_eval(224)(Image.fromarray(pixels))
    top, left = 16, 38  # int(round((256 - 224) / 2)), int(round((300 - 224) / 2))
    np.testing.assert_array_equal(out, pixels[top:top + 224, left:left + 224])


@pytest.mark.parametrize("size", [(500, 375), (333, 480)])
def test_centre_crop_equals_resize_then_crop(size):
    """torchvision's Resize(256) + CenterCrop(224) on a PIL image, spelled out in Pillow calls."""
    width, height = size
    pixels = Image.fromarray(image(width, height, seed=3))
    short, long = min(size), max(size)
    new = (256, int(256 * long / short)) if width <= height else (int(256 * long / short), 256)
    resized = pixels.resize(new, Image.Resampling.BILINEAR)
    left, top = int(round((new[0] - 224) / 2.0)), int(round((new[1] - 224) / 2.0))
    reference = np.asarray(resized.crop((left, top, left + 224, top + 224)), dtype=np.int16)
    out = ImageTransform.for_eval(224)(pixels).astype(np.int16)
    assert out.shape == (224, 224, 3)
    assert np.abs(out - reference).max() <= 1  # the same filter taps; fixed-point rounding may differ by 1
    box = centre_crop_box(width, height, 256, 224)
    assert box[2] - box[0] == pytest.approx(224 * width / new[0])
    assert box[3] - box[1] == pytest.approx(224 * height / new[1])


def test_flip_is_exact():
    pixels = image(64, 64, seed=5)
    whole = dict(size=64, scale=(1.0, 1.0), ratio=(1.0, 1.0))  # the crop is the whole image, at its own size
    rng = np.random.default_rng(0)
    flipped = ImageTransform(train=True, flip=1.0, **whole)(Image.fromarray(pixels), rng)
    kept = ImageTransform(train=True, flip=0.0, **whole)(Image.fromarray(pixels), rng)
    np.testing.assert_array_equal(flipped, pixels[:, ::-1])
    np.testing.assert_array_equal(kept, pixels)


def test_flips_half_the_time():
    pixels = Image.fromarray(image(32, 32, seed=6))
    transform = ImageTransform(train=True, size=32, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    rng = np.random.default_rng(0)
    flips = sum(not np.array_equal(transform(pixels, rng), np.asarray(pixels)) for _ in range(400))
    assert 160 < flips < 240


def test_training_crop_equals_crop_then_resize():
    pixels = Image.fromarray(image(480, 360, seed=7))
    transform = ImageTransform(train=True, size=224, flip=0.0)
    left, top, w, h = random_resized_crop_box(480, 360, np.random.default_rng(11))
    reference = np.asarray(pixels.crop((left, top, left + w, top + h)).resize((224, 224), Image.Resampling.BILINEAR))
    out = transform(pixels, np.random.default_rng(11))
    assert np.abs(out.astype(int) - reference.astype(int)).max() <= 1


@pytest.mark.parametrize("seed", range(6))
def test_flipped_training_crops_equal_crop_resize_flip(seed):
    """torchvision's order (crop, resize, then flip) against resnetlab's (crop, mirror, resize in torch's kernel),
    for crops smaller and larger than the output."""
    pixels = Image.fromarray(image(480, 360, seed=seed))
    transform = ImageTransform(train=True, size=224, flip=1.0)
    left, top, w, h = random_resized_crop_box(480, 360, np.random.default_rng(seed))
    cropped = pixels.crop((left, top, left + w, top + h)).resize((224, 224), Image.Resampling.BILINEAR)
    reference = np.asarray(cropped)[:, ::-1]
    out = transform(pixels, np.random.default_rng(seed))
    assert np.abs(out.astype(int) - reference.astype(int)).max() <= 1


def test_the_transform_writes_into_the_row_it_is_given():
    pixels = Image.fromarray(image(300, 200, seed=9))
    batch = np.zeros((2, 64, 64, 3), dtype=np.uint8)
    out = ImageTransform(train=True, size=64)(pixels, np.random.default_rng(0), out=batch[1])
    assert out.base is batch or np.shares_memory(out, batch)
    np.testing.assert_array_equal(batch[1], ImageTransform(train=True, size=64)(pixels, np.random.default_rng(0)))
    assert not batch[0].any()


def test_draft_decoding_of_large_jpegs_stays_close_to_a_full_decode():
    transform = ImageTransform.for_eval(224)
    fast = transform(smooth_jpeg(2000, 1500))
    drafted = smooth_jpeg(2000, 1500)
    full = ImageTransform.for_eval(224, draft=False)(drafted)
    assert fast.shape == full.shape == (224, 224, 3)
    assert np.abs(fast.astype(int) - full.astype(int)).mean() < 3  # levels of 255
    opened = smooth_jpeg(2000, 1500)
    transform(opened)
    assert opened.size[0] < 2000  # it did decode at a reduced scale (1500 / 256 > 4: a quarter)


def test_modes_are_converted():
    pixels = image(40, 30, seed=8)
    gray = Image.fromarray(pixels).convert("L")
    out = ImageTransform.for_eval(16)(gray)
    assert out.shape == (16, 16, 3) and math.isclose(float(out[..., 0].mean()), float(out[..., 2].mean()))
