"""One training step and what surrounds it: the step function, the on-device loss window, stop requests.

The step returns device tensors and never waits for the device; the loss window collects a few steps' losses
on the device and reads them back in one transfer, which also finds the exact step of a non-finite loss.
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnetlab.errors import UserError
from resnetlab.train.config import TrainConfig
from resnetlab.train.optim import conv_kernels, l2_penalty
from resnetlab.train.precision import autocast_context


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite; the run stops and its last good checkpoint stays."""


class TrainingStopped(Exception):
    """A stop was requested (SIGTERM, Ctrl-C); a checkpoint at the current step has been written."""

    def __init__(self, run_dir: Path, step: int) -> None:
        super().__init__(f"stopped at step {step}; checkpoint saved. Resume with: resnetlab train --resume {run_dir}")
        self.run_dir, self.step = run_dir, step


StepFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def build_train_step(model: nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig, device: torch.device,
                     amp: bool, penalised: nn.Module | None = None) -> StepFn:
    """Forward, loss (+ Keras-style L2 on ``penalised``'s conv kernels), backward, update.

    Returns the loss and the number of correct predictions as device tensors: reading them is left to the caller,
    so the step itself never waits for the device.
    """
    kernels = conv_kernels(penalised or model) if config.l2 else []

    def step(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast_context(device, amp, cache=False):
            logits = model(images)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=config.label_smoothing)
        objective = loss + l2_penalty(kernels, config.l2) if kernels else loss
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        optimizer.step()
        return loss.detach(), (logits.argmax(dim=1) == labels).sum()

    return step


class LossWindow:
    """Per-step losses and correct counts kept on the device, read back in one transfer every few steps."""

    def __init__(self, size: int, device: torch.device) -> None:
        self.losses = torch.zeros(size, device=device)
        self.correct = torch.zeros(size, device=device, dtype=torch.int64)
        self.sizes: list[int] = []

    def add(self, loss: torch.Tensor, correct: torch.Tensor, batch_size: int) -> None:
        index = len(self.sizes)
        self.losses[index] = loss
        self.correct[index] = correct
        self.sizes.append(batch_size)

    def full(self) -> bool:
        return len(self.sizes) == len(self.losses)

    def flush(self, first_step: int, epoch: int) -> tuple[float, int, int]:
        """(sum of loss x batch size, correct, images) since the last flush; raises on a non-finite loss."""
        count = len(self.sizes)
        losses = self.losses[:count].tolist()
        correct = int(self.correct[:count].sum())
        for offset, value in enumerate(losses):
            if not math.isfinite(value):
                raise NonFiniteLoss(f"loss is {value} at step {first_step + offset + 1} (epoch {epoch + 1}); "
                                    "training stopped. Try a lower --lr.")
        loss_sum = sum(value * size for value, size in zip(losses, self.sizes))
        images = sum(self.sizes)
        self.sizes.clear()
        return loss_sum, correct, images


@contextmanager
def stop_requests() -> Iterator[threading.Event]:
    """Turn SIGTERM and the first Ctrl-C into a request to stop at the next step boundary."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum: int, frame: Any) -> None:
        if requested.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        requested.set()

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield requested
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
