"""Learning rates as pure functions of the step (testable, plottable), plus the two schedules that need state:
the paper's error-triggered warm-up and Keras' ReduceLROnPlateau.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from resnetlab.train.config import TrainConfig

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


@dataclass
class WarmupState:
    """DRL section 4.2: "we use 0.01 to warm up the training until the training error is below 80% (about 400
    iterations), and then go back to 0.1". Checked on the mean training error since the last progress update."""

    active: bool = False
    finished_at: int = -1

    def update(self, step: int, train_error: float, config: TrainConfig) -> None:
        if self.active and (train_error < config.warmup_error or step >= config.warmup_max_iterations):
            self.active = False
            self.finished_at = step

    def state_dict(self) -> dict:
        return asdict(self)


@dataclass
class PlateauState:
    """Keras' ReduceLROnPlateau (mode auto, cooldown 0): after ``patience`` epochs without improvement of the
    monitored value (by more than Keras' ``min_delta`` of 1e-4), multiply the learning rate by ``factor``, not below
    ``min_lr``."""

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
        if self.wait < config.plateau_patience:
            return False
        self.wait = 0
        new_lr = max(current_lr * config.plateau_factor, config.plateau_min_lr)
        if new_lr >= current_lr:
            return False
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
