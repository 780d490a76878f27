"""Learning rates as pure functions of the step (testable, plottable), plus the two schedules that need state:
the paper's error-triggered warm-up and Keras' ReduceLROnPlateau.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from resnetlab.train.config import TrainConfig
from resnetlab.train.optim import conv_kernels, l2_penalty

PLATEAU_MIN_DELTA = 1e-4


def keras_lr(epoch: int, base_lr: float = 1e-3) -> float:
    """The tutorial's ``lr_schedule(epoch)``, epoch counted from 0 as Keras' LearningRateScheduler passes it."""
    lr = base_lr
    if epoch > 180:
        lr *= 0.5e-3
    elif epoch > 160:
        lr *= 1e-3
    elif epoch > 120:
        lr *= 1e-2
    elif epoch > 80:
        lr *= 1e-1
    return lr


def progressive_segments(config: TrainConfig, total_steps: int) -> list[tuple[int, int, int]]:
    """Progressive resizing as (first step, end step, side) segments: each of ``progressive_sizes`` until its
    fraction ``progressive_until`` of the steps. Fractions, like the milestones, so that ``--epochs N`` shortens
    the whole schedule."""
    segments, start = [], 0
    for side, until in zip(config.progressive_sizes, config.progressive_until):
        end = round(until * total_steps)
        if end > start:
            segments.append((start, end, side))
        start = max(start, end)
    return segments


def side_segments(config: TrainConfig, total_steps: int) -> list[tuple[int, int, int]]:
    """The progressive segments, then ``image_size`` to the end: the whole run."""
    segments = progressive_segments(config, total_steps)
    start = segments[-1][1] if segments else 0
    return [*segments, (start, total_steps, config.image_size)] if start < total_steps else segments


def train_side(config: TrainConfig, step: int, total_steps: int) -> int:
    """The side of the training batch of ``step`` (counted from 0)."""
    return next((side for _, end, side in side_segments(config, total_steps) if step < end), config.image_size)


def scheduled_lr(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The learning rate of ``step`` (counted from 0) before warm-up and plateau adjustments."""
    total = config.total_steps(steps_per_epoch)
    peak = config.lr
    if config.schedule == "keras":
        return keras_lr(step // steps_per_epoch, peak)
    if config.warmup_iterations and step < config.warmup_iterations:
        return peak * (step + 1) / config.warmup_iterations
    if config.schedule == "step":
        return peak * config.gamma ** sum(step >= round(fraction * total) for fraction in config.milestones)
    final = peak * config.final_lr_fraction
    if config.schedule == "cosine":
        start = config.warmup_iterations
        progress = (step - start) / max(1, total - start)
        return final + (peak - final) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    if config.schedule == "onecycle":
        rise = max(1, round(config.onecycle_peak * total))
        if step < rise:
            return peak * (step + 1) / rise
        return final + (peak - final) * max(0.0, (total - step) / max(1, total - rise))
    return peak


def warmup_applies(config: TrainConfig, depth: int) -> bool:
    """Whether the deep-net warm-up is on for a model of ``depth`` layers (the registry's metadata)."""
    return config.warmup_lr > 0 and depth >= config.warmup_min_depth


Reduce = Callable[[list[float]], list[float]]


@dataclass
class WarmupState:
    """DRL section 4.2: "we use 0.01 to warm up the training until the training error is below 80% (about 400
    iterations), and then go back to 0.1".

    The check runs at a fixed cadence that is part of the recipe, never at the logging cadence: after every
    ``warmup_check_every``-th step (counted from the start of training) on the training error of the batches since
    the previous check. The paper's 50-step default ends warm-up within 50 iterations (an eighth of the paper's
    "about 400") of the crossing, on 6,400 images per check at batch 128, so the estimate is not noisy; the host
    waits for the device once per check, and only while warm-up lasts. ``window_*`` hold the current window, so a
    checkpoint taken between checks resumes exactly (with several processes each keeps its own share, and a
    resumed run gives every process rank 0's: the sum at the next check is then approximate).
    """

    active: bool = False
    finished_at: int = -1
    window_correct: int = 0
    window_images: int = 0

    def __post_init__(self) -> None:
        self._pending: torch.Tensor | None = None  # correct predictions on the device, not read back yet

    def after_step(self, step: int, correct: torch.Tensor, batch_size: int, config: TrainConfig,
                   reduce: Reduce | None = None) -> None:
        """Count one finished step (``step`` counted from 1); at a check, end the warm-up if the error is low.

        ``reduce`` sums [correct, images] over the processes of a distributed run, so that all of them decide
        alike."""
        if not self.active:
            return
        self._pending = correct.detach().clone() if self._pending is None else self._pending + correct
        self.window_images += batch_size
        last = step >= config.warmup_max_iterations
        if step % config.warmup_check_every and not last:
            return
        self._read_back()
        correct_sum, images = (reduce or (lambda values: values))([float(self.window_correct),
                                                                   float(self.window_images)])
        self.window_correct = self.window_images = 0
        if 1 - correct_sum / max(1.0, images) < config.warmup_error or last:
            self.active = False
            self.finished_at = step

    def _read_back(self) -> None:
        if self._pending is not None:
            self.window_correct += int(self._pending)
            self._pending = None

    def state_dict(self) -> dict:
        self._read_back()
        return asdict(self)


@dataclass
class PlateauState:
    """Keras' ReduceLROnPlateau (mode auto, cooldown 0; keras/src/callbacks/reduce_lr_on_plateau.py): after
    ``patience`` epochs without improvement of the monitored value (by more than Keras' ``min_delta`` of 1e-4),
    multiply the learning rate by ``factor``, not below ``min_lr``. As in Keras, the wait is reset by an
    improvement or a reduction, and no reduction happens once the lr is at ``min_lr``."""

    scale: float = 1.0
    best: float | None = None
    wait: int = 0
    reductions: int = 0

    def update(self, value: float, current_lr: float, config: TrainConfig) -> bool:
        """Record one epoch's monitored value; returns True when the learning rate was reduced."""
        higher_is_better = config.plateau_monitor.endswith("acc")
        improved = self.best is None or (value > self.best + PLATEAU_MIN_DELTA if higher_is_better
                                         else value < self.best - PLATEAU_MIN_DELTA)
        if improved:
            self.best, self.wait = value, 0
            return False
        self.wait += 1
        # Keras reduces (and only then resets the wait) while the lr is above min_lr; at min_lr the wait grows on.
        if self.wait < config.plateau_patience or not current_lr > config.plateau_min_lr:
            return False
        self.wait = 0
        new_lr = max(current_lr * config.plateau_factor, config.plateau_min_lr)
        self.scale *= new_lr / current_lr
        self.reductions += 1
        return True

    def state_dict(self) -> dict:
        return asdict(self)


def effective_lr(config: TrainConfig, step: int, steps_per_epoch: int, warmup: WarmupState,
                 plateau: PlateauState) -> float:
    """What the optimizer uses at ``step``: warm-up overrides, then the plateau's reductions scale the schedule
    (unless the schedule resets them every epoch, as Keras' LearningRateScheduler does)."""
    if warmup.active:
        return config.warmup_lr
    lr = scheduled_lr(config, step, steps_per_epoch)
    if config.plateau_factor and not config.plateau_reset_by_schedule:
        lr = max(lr * plateau.scale, config.plateau_min_lr)
    return lr


def monitored_value(row: dict[str, Any], split: str, config: TrainConfig, model: nn.Module) -> float:
    """The plateau's value for ``split`` from a history row. A monitored loss is Keras' ``val_loss``: the loss
    Keras minimises, its kernel regularizers' l2 terms included (``compute_loss`` adds ``model.losses`` in
    evaluation as in training), so the current weights' penalty is added to the cross-entropy."""
    name = config.plateau_monitor.split("_", 1)[1]
    value = row[f"{split}_{name}"]
    if name == "loss" and config.l2:
        with torch.no_grad():
            value += float(l2_penalty(conv_kernels(model), config.l2))
    return value
