"""What a new run checks before it writes anything into its run directory, and then the records it writes there.

A run that fails at start-up (a model that cannot take the images, a setting the device refuses) must leave no
``config.toml`` or ``environment.json`` behind: such a directory looks like a run, yet holds none. So ``start_run``
(train/loop.py) builds everything first, the training step included, and only then calls ``write_run_records``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from resnetlab.errors import UserError
from resnetlab.files import atomic_write_text, write_json
from resnetlab.models import model_info
from resnetlab.train.config import TrainConfig, to_toml
from resnetlab.train.environment import command_line, describe_environment
from resnetlab.train.precision import Precision


def check_image_size(config: TrainConfig) -> None:
    """The Keras tutorial's nets end in a fixed 8x8 average pooling and a dense layer sized for it: they take
    their own input size only. Checked before any data is loaded."""
    info = model_info(config.model)
    if info.family.startswith("keras") and config.image_size != info.input_size:
        raise UserError(f"{config.model} ends in the tutorial's fixed 8x8 average pooling, so it takes only "
                        f"{info.input_size}x{info.input_size} images, not {config.image_size}x{config.image_size}: "
                        "drop --image-size")


@torch.no_grad()
def check_model_takes_images(model: nn.Module, config: TrainConfig, device: torch.device) -> None:
    """One blank image of ``config.image_size`` through the model, in eval mode (no batch statistics change, no
    random number is drawn): a model that cannot take that size is refused in one line, not a traceback."""
    side = config.image_size
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, 3, side, side, device=device))
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[0]
        raise UserError(f"{config.model} cannot take {side}x{side} images ({first_line}); choose another "
                        "--image-size or model") from None
    finally:
        model.train(was_training)


def write_run_records(run_dir: Path, config: TrainConfig, device: torch.device, precision: Precision) -> None:
    """A new run's ``config.toml`` and ``environment.json``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.toml", to_toml(config.to_dict()))
    write_json(run_dir / "environment.json", {**describe_environment(device), "command": command_line(),
                                              "seed": config.seed, "precision": precision.to_dict(),
                                              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
