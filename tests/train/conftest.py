"""A finished one-epoch resnet8 run of the tiny data at 8x8, shared by the tests that only read it."""

from pathlib import Path

import pytest

from resnetlab.train.config import resolve_config
from resnetlab.train.loop import fit


@pytest.fixture(scope="session")
def resnet8_run(tmp_path_factory, tiny_data) -> Path:
    """resnet8 on 8x8 images (3 classes), one epoch of 4 steps; read-only: copy it to change it."""
    config = resolve_config("paper", overrides=dict(model="resnet8", data=str(tiny_data), iterations=0, epochs=1,
                                                    val_split=0, batch_size=16, image_size=8, deterministic=True,
                                                    tensorboard=False))
    run = tmp_path_factory.mktemp("resnet8-8px") / "resnet8"
    fit(config, run, show_progress=False, log=lambda _: None)
    return run
