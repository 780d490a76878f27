"""What a run needs to be reproduced: versions, device, seed; and the switches that make it deterministic."""

from __future__ import annotations

import platform
import random
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

import resnetlab
from resnetlab.errors import UserError


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device cuda was asked for, but this PyTorch sees no CUDA GPU")
    return device


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = not deterministic
    if deterministic != torch.are_deterministic_algorithms_enabled():  # the call is slow: it imports the compiler
        torch.use_deterministic_algorithms(deterministic)


def git_revision() -> str:
    """The source checkout's commit, when resnetlab runs from one; "" otherwise."""
    source = Path(resnetlab.__file__).resolve().parent
    try:
        result = subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def describe_environment(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "resnetlab": resnetlab.__version__,
        "git_revision": git_revision(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        info.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                    gpu=torch.cuda.get_device_name(device), gpu_count=torch.cuda.device_count())
    return info
