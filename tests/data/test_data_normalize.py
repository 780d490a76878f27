"""Normalizers: statistics from the training images only, applied to uint8 NCHW batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from data_helpers import random_images

from resnetlab.data import Normalizer, fit_normalizer
from resnetlab.errors import UserError


def _nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2)


def test_pixel_mean_centres_every_pixel():
    images = random_images(50, size=6, seed=1)
    norm = fit_normalizer("pixel_mean", images)
    assert norm.mean.shape == (3, 6, 6) and torch.equal(norm.std, torch.ones(3, 1, 1))
    out = norm(_nchw(images))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.mean(0), torch.zeros(3, 6, 6), atol=1e-6, rtol=0)
    # The tutorial's formula: x/255 - mean over the training images.
    expected = images.astype(np.float32) / 255 - (images.astype(np.float64) / 255).mean(0).astype(np.float32)
    torch.testing.assert_close(out, _nchw(expected), atol=1e-6, rtol=0)


def test_channel_gives_zero_mean_unit_std():
    images = random_images(40, size=5, seed=2)
    images[..., 2] //= 4  # channels with different statistics
    norm = fit_normalizer("channel", images)
    assert norm.mean.shape == (3, 1, 1) and norm.std.shape == (3, 1, 1)
    out = norm(_nchw(images)).double()
    torch.testing.assert_close(out.mean((0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std((0, 2, 3), correction=0), torch.ones(3, dtype=torch.float64), atol=1e-5, rtol=0)


def test_none_scales_only():
    images = random_images(3, seed=3)
    norm = fit_normalizer("none", images)
    torch.testing.assert_close(norm(_nchw(images)), _nchw(images).float() / 255)
    assert torch.equal(norm.mean, torch.zeros(3, 1, 1))


def test_fitting_is_chunked_but_exact():
    images = random_images(5000, size=2, seed=4)  # more than one chunk
    norm = fit_normalizer("pixel_mean", images)
    expected = (images.astype(np.float64) / 255).mean(0).transpose(2, 0, 1)
    np.testing.assert_allclose(norm.mean.numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("kind", ["pixel_mean", "channel", "none"])
def test_state_dict_round_trip(kind):
    images = random_images(10, seed=5)
    norm = fit_normalizer(kind, images)
    again = Normalizer.from_state_dict(norm.state_dict())
    assert again.kind == kind
    assert torch.equal(again(_nchw(images)), norm(_nchw(images)))


def test_unknown_kind():
    with pytest.raises(UserError, match="unknown normalization 'zca'"):
        fit_normalizer("zca", random_images(2))


def test_pixel_mean_refuses_other_sizes():
    norm = fit_normalizer("pixel_mean", random_images(2, size=8))
    with pytest.raises(UserError, match="fitted on"):
        norm(_nchw(random_images(2, size=4)))


@pytest.mark.parametrize("kind", ["channel", "imagenet"])
@pytest.mark.parametrize("shape", [(4, 16, 16), (3, 5, 7)])  # 16-pixel rows (the fast path) and not
def test_channels_last_batches_normalize_bit_for_bit_as_channels_first(kind, shape):
    """Streamed batches arrive as (N, H, W, 3) viewed as (N, 3, H, W); their faster route computes the same."""
    normalizer = fit_normalizer(kind, random_images(8, size=8))
    n, h, w = shape
    pixels = torch.randint(0, 256, (n, h, w, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    interleaved = pixels.permute(0, 3, 1, 2)
    out = normalizer(interleaved)
    assert torch.equal(out, normalizer(interleaved.contiguous()))
    assert out.is_contiguous(memory_format=torch.channels_last)
