"""What a run needs to be reproduced: versions, device, seed; and the switches that make it deterministic."""

from __future__ import annotations

import ctypes
import platform
import random
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

import resnetlab
from resnetlab.errors import UserError
from resnetlab.train.precision import cpu_facts


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


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory_for_reuse() -> bool:
    """Make glibc's malloc keep large freed blocks for reuse instead of returning them to the kernel.

    PyTorch's CPU tensors come from malloc. By default glibc serves large blocks with fresh pages from mmap and
    gives freed memory back at the top of the heap, so every CPU training step touches its activations' memory
    for the first time again: ResNet-20 at batch 128 took ~9,200 page faults (~36 MB of zeroed pages) per step
    on the 2-core machine, 0 with these settings (benchmarks/README.md). The process keeps its peak memory, as
    PyTorch's caching allocator does on a GPU. Linux with glibc only; returns whether the settings took.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, say)
        return False
    trimmed = mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    # Some glibc versions refuse an mmap threshold above 32 MiB (the documented maximum); 2.36 takes 1 GiB.
    mapped = mallopt(_M_MMAP_THRESHOLD, 1 << 30) or mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    return bool(trimmed and mapped)


def git_revision() -> str:
    """The source checkout's commit, when resnetlab runs from one; "" otherwise."""
    source = Path(resnetlab.__file__).resolve().parent
    try:
        result = subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def command_line(argv: list[str] | None = None) -> str:
    """This process's command as a user would type it again: ``python -m resnetlab ...`` rather than the path of
    the package's ``__main__.py`` that ``-m`` leaves in ``sys.argv[0]`` (a path of one machine, in the records)."""
    argv = list(sys.argv if argv is None else argv)
    if argv and Path(argv[0]).name == "__main__.py" and Path(argv[0]).parent.name == "resnetlab":
        argv[:1] = ["python", "-m", "resnetlab"]
    return shlex.join(argv)


def describe_environment(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "resnetlab": resnetlab.__version__,
        "git_revision": git_revision(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        **cpu_facts().to_dict(),  # model, torch's vector unit, the flags that decide speed and --amp auto
        "cpu_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        info.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                    gpu=torch.cuda.get_device_name(device), gpu_count=torch.cuda.device_count())
    return info
