"""resnetlab's batched Keras warp against Keras' own ImageDataGenerator.apply_transform (tests/fixtures/keras)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from resnetlab.data.augment import KERAS_EXAMPLE, KerasAugment, keras_apply_transform

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "keras" / "keras_augment.npz"
CASES = ("tutorial", "extreme", "example", "rect")


@pytest.fixture(scope="module")
def fixture() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return dict(data)


def _warp(fixture: dict[str, np.ndarray], case: str) -> tuple[np.ndarray, np.ndarray]:
    pixels = torch.from_numpy(fixture[f"{case}_pixels"]).permute(0, 3, 1, 2)
    images = pixels.float() / 255  # the same float32 values Keras was given
    params = {key: torch.from_numpy(fixture[f"{case}_{key}"])
              for key in ("theta", "tx", "ty", "flip_horizontal", "flip_vertical")}
    out = keras_apply_transform(images, **params)
    return out.permute(0, 2, 3, 1).numpy(), fixture[f"{case}_outputs"]


@pytest.mark.parametrize("case", CASES)
def test_warp_equals_keras_apply_transform(fixture, case):
    ours, keras = _warp(fixture, case)
    assert ours.shape == keras.shape and ours.dtype == np.float32
    assert np.abs(ours - keras).max() < 1e-5


def test_fixture_exercises_the_fill_vertical_flips_and_non_square_images(fixture):
    """What makes the comparison above cover 'nearest' fill (pixels read from outside the image), vertical flips,
    and rows kept apart from columns (on 24x40 images a swapped axis would move the centre and misplace every
    pixel)."""
    for case in CASES:
        assert fixture[f"{case}_outside"].mean() > 0.05, case
    assert fixture["rect_pixels"].shape[1:3] == (24, 40) and fixture["rect_flip_vertical"].any()


def test_fixture_parameters_cover_the_tutorial_ranges(fixture):
    tutorial = KerasAugment()
    theta, tx, ty = (fixture[f"tutorial_{key}"] for key in ("theta", "tx", "ty"))
    assert np.abs(theta).max() <= tutorial.rotation_range and np.abs(theta).max() > 10
    assert np.abs(tx).max() <= 0.2 * 32 and np.abs(ty).max() <= 0.2 * 32
    assert not np.allclose(tx, np.round(tx))  # fractional shifts, as Keras draws them
    assert fixture["tutorial_flip_horizontal"].any() and not fixture["tutorial_flip_vertical"].any()
    assert np.all(fixture["example_theta"] == 0) and np.abs(fixture["example_tx"]).max() <= 3.2
    assert KERAS_EXAMPLE.rotation_range == 0 and KERAS_EXAMPLE.width_shift_range == 0.1
