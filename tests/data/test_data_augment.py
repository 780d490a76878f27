"""Properties of each augmentation, checked exactly where the maths allows."""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F

from resnetlab.data import KerasAugment, augment
from resnetlab.data.augment import KERAS_EXAMPLE, crop_flip, keras_apply_transform
from resnetlab.errors import UserError


def _batch(n: int = 16, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _window(image: torch.Tensor, dy: int, dx: int, h: int, w: int, flip: bool) -> torch.Tensor:
    window = image[:, dy : dy + h, dx : dx + w]
    return window.flip(-1) if flip else window


def test_crop_flip_is_a_window_of_the_padded_image():
    x = _batch(n=24, h=12, w=10)
    out = crop_flip(x, _gen(1))
    assert out.shape == x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    offsets, flips = set(), 0
    for i in range(len(x)):
        windows = {
            (dy, dx, flip): _window(padded[i], dy, dx, 12, 10, flip)
            for dy in range(9)
            for dx in range(9)
            for flip in (False, True)
        }
        matches = [key for key, window in windows.items() if torch.equal(out[i], window)]
        assert len(matches) == 1, f"image {i} is not exactly one window of the padded input"
        offsets.add(matches[0][:2])
        flips += matches[0][2]
    assert len(offsets) > 5 and 0 < flips < len(x)  # the randomness is used


def test_crop_flip_repeats_with_seed():
    x = _batch()
    assert torch.equal(augment(x, "crop_flip", _gen(3)), augment(x, "crop_flip", _gen(3)))
    assert not torch.equal(augment(x, "crop_flip", _gen(3)), augment(x, "crop_flip", _gen(4)))


def test_flip_is_exact():
    x = _batch(n=4)
    zero = torch.zeros(4)
    yes, no = torch.ones(4, dtype=torch.bool), torch.zeros(4, dtype=torch.bool)
    flipped = keras_apply_transform(x, zero, zero, zero, yes, no)
    torch.testing.assert_close(flipped, x.flip(-1), atol=1e-5, rtol=0)
    upside = keras_apply_transform(x, zero, zero, zero, no, yes)
    torch.testing.assert_close(upside, x.flip(-2), atol=1e-5, rtol=0)


def test_keras_zero_ranges_are_identity():
    x = _batch()
    settings = KerasAugment(rotation_range=0, width_shift_range=0, height_shift_range=0, horizontal_flip=False)
    torch.testing.assert_close(augment(x, settings, _gen(0)), x, atol=1e-5, rtol=0)


def test_integer_shift_fills_with_nearest_border():
    x = _batch(n=2, h=8, w=8)
    zero, no = torch.zeros(2), torch.zeros(2, dtype=torch.bool)
    # Keras' tx moves columns, ty rows (its matrix is built in (x, y) and swapped for row-major arrays).
    out = keras_apply_transform(x, zero, torch.full((2,), 2.0), zero, no, no)  # column c reads column c + 2
    torch.testing.assert_close(out[..., :6], x[..., 2:], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[..., 6:], x[..., 7:8].expand(-1, -1, -1, 2), atol=1e-5, rtol=0)
    out = keras_apply_transform(x, zero, zero, torch.full((2,), -3.0), no, no)  # row r reads row r - 3
    torch.testing.assert_close(out[..., 3:, :], x[..., :5, :], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[..., :3, :], x[..., :1, :].expand(-1, -1, 3, -1), atol=1e-5, rtol=0)


def test_quarter_turn_keeps_pixels():
    x = _batch(n=1, h=6, w=6)
    zero, no = torch.zeros(1), torch.zeros(1, dtype=torch.bool)
    out = keras_apply_transform(x, torch.full((1,), 90.0), zero, zero, no, no)
    # A quarter turn maps the pixel grid onto itself, so no value is interpolated.
    assert any(torch.allclose(out, torch.rot90(x, k, dims=(2, 3)), atol=1e-4) for k in (1, 3))


def test_keras_defaults_follow_the_tutorial():
    assert KerasAugment() == KerasAugment(
        rotation_range=20.0, width_shift_range=0.2, height_shift_range=0.2, horizontal_flip=True, vertical_flip=False
    )
    assert KERAS_EXAMPLE == KerasAugment(rotation_range=0.0, width_shift_range=0.1, height_shift_range=0.1)


def test_keras_keeps_shape_dtype_and_seeds():
    x = _batch(n=8, h=16, w=24)
    out = augment(x, "keras", _gen(5))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert not torch.equal(out, x)
    assert torch.equal(out, augment(x, "keras", _gen(5)))
    assert not torch.equal(out, augment(x, "keras", _gen(6)))
    wide = augment(x, KerasAugment(rotation_range=20, width_shift_range=0.2, height_shift_range=0.2), _gen(5))
    assert wide.shape == x.shape
    # Values stay within the input's range: bilinear mixing and border fill never extrapolate.
    assert wide.min() >= x.min() - 1e-5 and wide.max() <= x.max() + 1e-5


def keras_draws(monkeypatch, kind, n: int = 4096, h: int = 24, w: int = 40) -> dict[str, torch.Tensor]:
    """The per-image parameters ``augment`` hands to the warp for an (n, 3, h, w) batch."""
    drawn = {}

    def capture(images, theta, tx, ty, flip_horizontal, flip_vertical):
        drawn.update(theta=theta, tx=tx, ty=ty, flip_h=flip_horizontal, flip_v=flip_vertical)
        return images

    # importlib: ``resnetlab.data.augment`` as an attribute is the function the package re-exports
    monkeypatch.setattr(importlib.import_module("resnetlab.data.augment"), "keras_apply_transform", capture)
    augment(torch.zeros(n, 3, h, w), kind, _gen(0))
    return drawn


def assert_uniform_within(values: torch.Tensor, bound: float) -> None:
    """Drawn from [-bound, bound]: inside it, reaching near both ends, and not rounded to whole pixels."""
    assert values.abs().max() <= bound
    assert values.max() > 0.95 * bound and values.min() < -0.95 * bound
    assert (values != values.round()).float().mean() > 0.99


def test_keras_draws_the_tutorials_rotations_shifts_and_flips(monkeypatch):
    """As ``get_random_transform`` draws them: theta in degrees within rotation_range, tx within
    height_shift_range x rows, ty within width_shift_range x columns, a left-right flip for half the images."""
    drawn = keras_draws(monkeypatch, "keras")  # 24 rows, 40 columns
    assert_uniform_within(drawn["theta"], 20.0)
    assert_uniform_within(drawn["tx"], 0.2 * 24)
    assert_uniform_within(drawn["ty"], 0.2 * 40)
    assert 0.45 < drawn["flip_h"].float().mean() < 0.55 and not drawn["flip_v"].any()


def test_keras_shift_ranges_scale_their_own_axis(monkeypatch):
    drawn = keras_draws(monkeypatch, KerasAugment(rotation_range=0, height_shift_range=0.1, width_shift_range=0.3,
                                                  horizontal_flip=False, vertical_flip=True))
    assert torch.count_nonzero(drawn["theta"]) == 0
    assert_uniform_within(drawn["tx"], 0.1 * 24)
    assert_uniform_within(drawn["ty"], 0.3 * 40)
    assert not drawn["flip_h"].any() and 0.45 < drawn["flip_v"].float().mean() < 0.55


def test_keras_example_draws_no_rotation_and_tenth_shifts(monkeypatch):
    drawn = keras_draws(monkeypatch, KERAS_EXAMPLE)
    assert torch.count_nonzero(drawn["theta"]) == 0
    assert_uniform_within(drawn["tx"], 0.1 * 24)
    assert_uniform_within(drawn["ty"], 0.1 * 40)
    assert 0.45 < drawn["flip_h"].float().mean() < 0.55 and not drawn["flip_v"].any()


def test_none_returns_input():
    x = _batch(n=2)
    assert augment(x, "none", _gen(0)) is x


def test_unknown_kind():
    with pytest.raises(UserError, match="unknown augmentation 'mixup'"):
        augment(_batch(n=1), "mixup", _gen(0))
