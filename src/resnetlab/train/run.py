"""One training run's state, all of it in one object (``Run``), and what is computed from it alone: the checkpoint
it writes, the summary it ends with. No module-level state: several runs can live in one process.

``Progress`` is the part a checkpoint carries, so that a resumed run continues exactly; the data order and the
augmentation come from the loaders' own per-run generators, and the model's initial weights from the seed.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from resnetlab.data import Normalizer
from resnetlab.train.checkpoint import save_checkpoint
from resnetlab.train.config import TrainConfig
from resnetlab.train.distributed import Distributed
from resnetlab.train.inputs import Loader, pipeline_metadata
from resnetlab.train.optim import portable_state_dict
from resnetlab.train.precision import Precision
from resnetlab.train.schedule import PlateauState, WarmupState
from resnetlab.train.step import LossWindow, StepFn

if TYPE_CHECKING:
    from resnetlab.train.runlog import RunLog


@dataclass
class Progress:
    """Where the run is; saved in every checkpoint so that a resumed run continues exactly."""

    step: int = 0
    epoch: int = 0  # the epoch in progress, from 0
    batch: int = 0  # the next batch of that epoch
    epoch_loss_sum: float = 0.0
    epoch_correct: int = 0
    epoch_count: int = 0
    epoch_seconds: float = 0.0
    wall_seconds: float = 0.0
    best_metric: float = -1.0
    best_epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class EpochState:
    """The epoch (or the rest of it) in progress in this process: its loss window and timers (not checkpointed)."""

    window: LossWindow
    whole: bool  # started at its first batch (so its wall time is an epoch's)
    wall_start: float = field(default_factory=time.perf_counter)
    started: float = field(default_factory=time.perf_counter)  # training time since the last history row
    window_start: float = field(default_factory=time.perf_counter)
    window_step: int = 0
    stopping: bool = False  # a stop request that every process agreed on


@dataclass
class Run:
    """Everything one run holds while it trains."""

    config: TrainConfig
    run_dir: Path
    device: torch.device
    precision: Precision
    model: nn.Module
    train_model: nn.Module  # the model, or its compiled / DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    normalizer: Normalizer
    classes: list[str]
    train_loader: Loader  # DeviceLoader (in memory) or StreamLoader (streamed): train/inputs.py
    eval_loaders: dict[str, Loader]
    log: RunLog
    progress: Progress = field(default_factory=Progress)
    warmup: WarmupState = field(default_factory=WarmupState)
    plateau: PlateauState = field(default_factory=PlateauState)
    dist: Distributed = field(default_factory=Distributed)
    step_fn: StepFn | None = None  # made once the run is restored (train/loop.py: make_train_step)
    epoch: EpochState | None = None

    @property
    def amp(self) -> bool:
        return self.precision.bf16

    @property
    def steps_per_epoch(self) -> int:
        """``config.steps_per_epoch`` (Keras' fit argument: the first batches of each epoch's shuffle), else one
        pass over the training split."""
        return self.config.steps_per_epoch or len(self.train_loader)

    @property
    def total_steps(self) -> int:
        return self.config.total_steps(self.steps_per_epoch)

    @property
    def finished(self) -> bool:
        return self.progress.step >= self.total_steps

    @property
    def steps_this_epoch(self) -> int:
        """The current epoch's length: a whole pass, or what is left of training in the last one."""
        return min(self.steps_per_epoch, self.total_steps - self.progress.epoch * self.steps_per_epoch)

    @property
    def epoch_done(self) -> bool:
        """The one rule for "this epoch's steps are all done"."""
        return self.progress.batch >= self.steps_this_epoch


def model_kwargs(config: TrainConfig, num_classes: int) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"num_classes": num_classes}
    if config.shortcut:
        kwargs["shortcut"] = config.shortcut
    if config.zero_init_residual:
        kwargs["zero_init_residual"] = True
    return kwargs


def checkpoint_payload(run: Run) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metadata for the weights file, training state) of the current moment."""
    config, progress = run.config, run.progress
    normalizer_state = run.normalizer.state_dict()
    metadata = {
        "step": progress.step, "epoch": progress.epoch, "model": config.model,
        "model_kwargs": model_kwargs(config, len(run.classes)), "classes": run.classes,
        "image_size": config.image_size, **pipeline_metadata(run.eval_loaders),
        "normalizer": {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in normalizer_state.items()},
        "data": config.data, "recipe_summary": {k: getattr(config, k) for k in ("optimizer", "lr", "batch_size")},
    }
    state = {"optimizer": portable_state_dict(run.optimizer), "progress": asdict(progress),
             "warmup": run.warmup.state_dict(), "plateau": run.plateau.state_dict(),
             "config": config.to_dict(), "normalizer": normalizer_state, "rng": torch.get_rng_state()}
    return metadata, state


def save(run: Run, kind: str = "step") -> Path | None:
    """Write a checkpoint (rank 0 only: the processes hold identical weights)."""
    if not run.dist.is_main:
        return None
    metadata, state = checkpoint_payload(run)
    keep = run.config.keep_checkpoints if kind == "step" else 1
    return save_checkpoint(run.run_dir, kind, run.model.state_dict(), metadata, state, keep=keep)


def summarize_run(run: Run) -> dict[str, Any]:
    """Final-epoch numbers and, separately, the test accuracy of the epoch the selection split chose."""
    config, progress = run.config, run.progress
    last = progress.history[-1] if progress.history else {}
    epoch_rows = [row for row in progress.history if not row.get("partial")]
    selected = next((row for row in epoch_rows if row["epoch"] == progress.best_epoch), None)
    return {
        "model": config.model, "data": config.data or "default", "seed": config.seed, "steps": progress.step,
        "epochs": len(epoch_rows), "final_train_error": last.get("train_error"),
        "final_val_acc": last.get("val_acc"), "final_test_acc": last.get("test_acc"),
        **({"final_test_acc_flip": last.get("test_acc_flip")} if config.eval_flip else {}),
        "selected_on": config.select_on if selected else None,
        "selected_epoch": progress.best_epoch if selected else None,
        "selected_test_acc": selected.get("test_acc") if selected else None,
        "selection_note": selection_note(config, has_val="val" in run.eval_loaders),
        "wall_seconds": progress.wall_seconds, "run_dir": str(run.run_dir),
    }


def selection_note(config: TrainConfig, has_val: bool) -> str:
    if config.select_on == "test":
        return "model selected on the TEST set, as the Keras tutorial does: its test accuracy is optimistic"
    if has_val:
        return "model selected on the validation split"
    return "no validation split: the final model is the result, nothing selected (as DRL section 4.2 reports)"
