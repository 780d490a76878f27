"""The training loop, one for every recipe. Read top to bottom: set up (or resume), then epochs of steps, each
epoch ending in evaluation, a history row and a checkpoint.

Speed habits (airbench): the dataset sits on the device and is augmented there in batches; the step runs under
bf16 autocast on CUDA with channels_last; the host waits for the device only every ``log_every`` steps, when the
window of per-step losses is read back (which also finds the exact step of a non-finite loss).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from resnetlab.data import DeviceLoader, KerasAugment, Normalizer, fit_normalizer, load_dataset, split_validation
from resnetlab.errors import CheckpointError, UserError
from resnetlab.models import create_model, model_info
from resnetlab.train import distributed
from resnetlab.train.announce import EtaClock, startup_lines
from resnetlab.train.checkpoint import clean_temporary, list_checkpoints, load_latest, save_checkpoint
from resnetlab.train.config import TrainConfig, apply_overrides, to_toml
from resnetlab.train.distributed import Distributed
from resnetlab.train.environment import (describe_environment, keep_freed_memory_for_reuse, pick_device,
                                         seed_everything)
from resnetlab.train.evaluate import evaluate
from resnetlab.train.graphs import graphed_if_supported
from resnetlab.files import atomic_write_text, write_json
from resnetlab.train.history import TensorBoardMirror, format_row, write_history
from resnetlab.train.lock import run_lock
from resnetlab.train.optim import build_optimizer, current_lr, portable_state_dict, set_lr
from resnetlab.train.precision import choose_precision
from resnetlab.train.schedule import PlateauState, WarmupState, effective_lr, monitored_value, warmup_applies
from resnetlab.train.step import LossWindow, NonFiniteLoss, StepFn, TrainingStopped, build_train_step, stop_requests

__all__ = ["NonFiniteLoss", "TrainingStopped", "build_train_step", "end_of_epoch", "fit", "setup", "train_epoch"]

EVAL_BATCH_SIZE = 500
Log = Callable[[str], None]


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
class Session:
    """Everything one run holds while it trains."""

    config: TrainConfig
    run_dir: Path
    device: torch.device
    amp: bool
    model: nn.Module
    train_model: nn.Module  # the model, or its compiled wrapper
    optimizer: torch.optim.Optimizer
    normalizer: Normalizer
    classes: list[str]
    train_loader: DeviceLoader
    eval_loaders: dict[str, DeviceLoader]
    progress: Progress
    warmup: WarmupState
    plateau: PlateauState
    log: Log
    dist: Distributed = field(default_factory=Distributed)
    tensorboard: TensorBoardMirror | None = None
    clock: EtaClock | None = None  # prints the expected end (announce.py)

    @property
    def steps_per_epoch(self) -> int:
        return self.config.steps_per_epoch or len(self.train_loader)

    @property
    def total_steps(self) -> int:
        return self.config.total_steps(self.steps_per_epoch)


def model_kwargs(config: TrainConfig, num_classes: int) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"num_classes": num_classes}
    if config.shortcut:
        kwargs["shortcut"] = config.shortcut
    if config.zero_init_residual:
        kwargs["zero_init_residual"] = True
    return kwargs


def augmentation(config: TrainConfig) -> str | KerasAugment:
    """The loader's augmentation: "keras" carries the recipe's ImageDataGenerator ranges."""
    if config.augmentation != "keras":
        return config.augmentation
    return KerasAugment(config.rotation_range, config.width_shift_range, config.height_shift_range)


def setup(config: TrainConfig, run_dir: Path, resume: bool, overrides: dict[str, Any], log: Log) -> Session:
    run_dir = Path(run_dir)
    if distributed.from_environment().is_main:  # only the writer may clear what killed writes left behind
        clean_temporary(run_dir)
    checkpoint = load_latest(run_dir, report=log) if resume else None
    if resume and checkpoint is None and list_checkpoints(run_dir):
        raise CheckpointError(f"{run_dir}: no loadable checkpoint (all are corrupt); move them away to start anew")
    if checkpoint is not None:
        config = apply_overrides(TrainConfig(**checkpoint.state["config"]), overrides, log)
        log(f"resuming {run_dir} from step {checkpoint.step} ({checkpoint.path.name})")
    config.validate()
    model_info(config.model)  # an unknown name or impossible depth fails before any data is loaded
    dist_info = distributed.from_environment()
    batch_per_process = distributed.per_rank_batch(config.batch_size, dist_info)
    device = pick_device(config.device)
    if device.type == "cuda" and dist_info.enabled:
        device = torch.device("cuda", dist_info.local_rank)
        torch.cuda.set_device(device)
    distributed.start(dist_info, device)
    seed_everything(config.seed, config.deterministic)
    if device.type == "cpu":
        keep_freed_memory_for_reuse()
    precision = choose_precision(config.amp, device)  # train/precision.py: bf16 only where it is native
    log(precision.line())
    # channels_last is faster on both: measured here 320 vs 251 img/s training ResNet-20 on 2 CPU cores (oneDNN)
    channels_last = config.channels_last != "off"

    dataset = split_validation(load_dataset(config.data or None, image_size=config.image_size,
                                            resize=not config.strict_image_size,
                                            report=log if dist_info.is_main else None),
                               config.val_split, seed=config.seed)
    normalizer = (Normalizer.from_state_dict(checkpoint.state["normalizer"]) if checkpoint
                  else fit_normalizer(config.normalization, dataset.train.images))
    common = dict(device=device, normalizer=normalizer, channels_last=channels_last)
    train_loader = DeviceLoader(dataset.train, batch_per_process,
                                augmentation=augmentation(config), shuffle=True, drop_last=config.drop_last,
                                seed=config.seed, rank=dist_info.rank, world_size=dist_info.world_size, **common)
    if config.steps_per_epoch > len(train_loader):
        raise UserError(f"steps_per_epoch {config.steps_per_epoch} is more than the {len(train_loader)} batches of "
                        f"one pass over the {len(dataset.train)} training images; lower it, or 0 for one pass")
    eval_loaders = {split: DeviceLoader(arrays, EVAL_BATCH_SIZE, shuffle=False, drop_last=False, **common)
                    for split, arrays in (("val", dataset.val), ("test", dataset.test)) if arrays is not None}

    model = create_model(config.model, **model_kwargs(config, dataset.num_classes)).to(device)
    if config.activation_checkpointing:
        if not hasattr(model, "set_grad_checkpointing"):
            raise UserError(f"{config.model} does not support activation checkpointing")
        model.set_grad_checkpointing(config.activation_checkpointing)
    if config.sync_bn and dist_info.enabled and device.type != "cuda":
        raise UserError("--sync-bn needs CUDA (PyTorch's SyncBatchNorm has no CPU implementation)")
    if config.sync_bn and dist_info.enabled:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, config, device)
    progress, plateau = Progress(), PlateauState()
    warmup = WarmupState(active=warmup_applies(config, model_info(config.model).depth))
    if checkpoint is not None:
        model.load_state_dict(checkpoint.model_state)
        optimizer.load_state_dict(checkpoint.state["optimizer"])
        progress = Progress(**checkpoint.state["progress"])
        warmup, plateau = WarmupState(**checkpoint.state["warmup"]), PlateauState(**checkpoint.state["plateau"])
        torch.set_rng_state(checkpoint.state["rng"])
    elif dist_info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.toml", to_toml(config.to_dict()))
        write_json(run_dir / "environment.json", {**describe_environment(device), "seed": config.seed,
                                                  "precision": precision.to_dict(),
                                                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    train_model = torch.compile(model) if config.compile else model
    if dist_info.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None)
    return Session(config, run_dir, device, precision.bf16, model, train_model, optimizer, normalizer, dataset.classes,
                   train_loader, eval_loaders, progress, warmup, plateau, log if dist_info.is_main else _silent,
                   dist_info, TensorBoardMirror(run_dir, progress.step) if config.tensorboard and dist_info.is_main
                   else None)


def _silent(message: str) -> None:
    """Processes other than rank 0 keep quiet."""


def make_train_step(session: Session) -> StepFn:
    """The eager step, replayed as a CUDA graph where ``config.cuda_graphs`` and the setup allow (graphs.py)."""
    config = session.config
    step = build_train_step(session.train_model, session.optimizer, config, session.device, session.amp,
                            session.model)
    step, chosen = graphed_if_supported(step, session.model, session.optimizer, config.cuda_graphs,
                                        device=session.device, distributed=session.dist.enabled,
                                        checkpointing=bool(config.activation_checkpointing),
                                        deterministic=config.deterministic, log=session.log)
    if session.device.type == "cuda":
        session.log(chosen)
    return step


def train_epoch(session: Session, step_fn: Callable, stop: threading.Event, show_progress: bool | None) -> bool:
    """Run the current epoch from ``progress.batch`` until its end, the end of training or a stop request.

    Returns whether to stop now (agreed by all processes)."""
    config, progress = session.config, session.progress
    steps_this_epoch = min(session.steps_per_epoch, session.total_steps - progress.epoch * session.steps_per_epoch)
    window = LossWindow(max(1, config.log_every), session.device)
    bar = tqdm(total=steps_this_epoch, initial=progress.batch, desc=f"epoch {progress.epoch + 1}", leave=False,
               disable=not session.dist.is_main or (None if show_progress is None else not show_progress),
               dynamic_ncols=True)
    started, window_start, window_step = time.perf_counter(), time.perf_counter(), progress.step
    lr = config.lr

    def across(values: list[float]) -> list[float]:
        return distributed.sum_across(values, session.dist, session.device)

    for images, labels in session.train_loader.epoch(progress.epoch, progress.batch):
        lr = effective_lr(config, progress.step, session.steps_per_epoch, session.warmup, session.plateau)
        set_lr(session.optimizer, lr)
        loss, correct = step_fn(images, labels)
        window.add(loss, correct, labels.shape[0])
        session.warmup.after_step(progress.step + 1, correct, labels.shape[0], config, reduce=across)
        progress.step += 1
        progress.batch += 1
        done = progress.batch >= steps_this_epoch
        history_point = config.eval_every > 0 and progress.step % config.eval_every == 0 and not done
        # One process alone must never stop early (the others would wait for it forever): with several
        # processes a stop request is only acted on at a flush, where all of them agree on it.
        stop_now = stop.is_set() and not session.dist.enabled
        if window.full() or done or stop_now or history_point:
            loss_sum, n_correct, n_images = window.flush(window_step, progress.epoch)
            loss_sum, n_correct, n_images = distributed.sum_across([loss_sum, n_correct, n_images], session.dist,
                                                                   session.device)
            n_correct, n_images = int(n_correct), int(n_images)
            stop_now = distributed.any_across(stop.is_set(), session.dist, session.device)
            progress.epoch_loss_sum += loss_sum
            progress.epoch_correct += n_correct
            progress.epoch_count += n_images
            elapsed = time.perf_counter() - window_start
            bar.update(progress.step - window_step)
            bar.set_postfix(loss=f"{loss_sum / max(1, n_images):.3f}", acc=f"{n_correct / max(1, n_images):.3f}",
                            lr=f"{lr:.3g}", img_s=f"{n_images / max(elapsed, 1e-9):,.0f}", refresh=False)
            if session.clock is not None:
                session.clock.tick(progress.step)
            window_start, window_step = time.perf_counter(), progress.step
        if history_point:
            progress.epoch_seconds += time.perf_counter() - started
            row = {**measure_row(session, steps_this_epoch), "partial": True}
            progress.history.append(row)
            publish_row(session, row)
            started = window_start = time.perf_counter()
        if done or stop_now:
            break
    progress.epoch_seconds += time.perf_counter() - started
    bar.close()
    return stop_now


def checkpoint_payload(session: Session) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metadata for the weights file, training state) of the current moment."""
    config, progress = session.config, session.progress
    normalizer_state = session.normalizer.state_dict()
    metadata = {
        "step": progress.step, "epoch": progress.epoch, "model": config.model,
        "model_kwargs": model_kwargs(config, len(session.classes)), "classes": session.classes,
        "image_size": config.image_size,
        "normalizer": {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in normalizer_state.items()},
        "data": config.data, "recipe_summary": {k: getattr(config, k) for k in ("optimizer", "lr", "batch_size")},
    }
    state = {"optimizer": portable_state_dict(session.optimizer), "progress": asdict(progress),
             "warmup": session.warmup.state_dict(), "plateau": session.plateau.state_dict(),
             "config": config.to_dict(), "normalizer": normalizer_state, "rng": torch.get_rng_state()}
    return metadata, state


def save(session: Session, kind: str = "step") -> Path | None:
    """Write a checkpoint (rank 0 only: the processes hold identical weights)."""
    if not session.dist.is_main:
        return None
    metadata, state = checkpoint_payload(session)
    keep = session.config.keep_checkpoints if kind == "step" else 1
    return save_checkpoint(session.run_dir, kind, session.model.state_dict(), metadata, state, keep=keep)


def measure_row(session: Session, steps_this_epoch: int) -> dict[str, Any]:
    """One history row now: the epoch's training loss and accuracy so far, and a full pass over val and test."""
    progress = session.progress
    fraction = progress.batch / max(1, steps_this_epoch)
    row: dict[str, Any] = {"epoch": progress.epoch + 1 if fraction >= 1 else round(progress.epoch + fraction, 4),
                           "step": progress.step, "lr": current_lr(session.optimizer)}
    count = max(1, progress.epoch_count)
    row.update(train_loss=progress.epoch_loss_sum / count, train_acc=progress.epoch_correct / count)
    row["train_error"] = 1 - row["train_acc"]
    for split in ("val", "test"):
        if split in session.eval_loaders:
            result = evaluate(session.model, session.eval_loaders[split].epoch(0), len(session.classes),
                              session.device, session.amp, flip=session.config.eval_flip)
            row.update({f"{split}_loss": result.loss, f"{split}_acc": result.accuracy, f"{split}_error": result.error})
            if result.flip_accuracy is not None:
                row[f"{split}_acc_flip"] = result.flip_accuracy
    row["epoch_seconds"] = progress.epoch_seconds
    row["images_per_sec"] = progress.epoch_count / max(progress.epoch_seconds, 1e-9)
    return row


def publish_row(session: Session, row: dict[str, Any]) -> None:
    """Show the newest history row: the history files (rank 0), TensorBoard, the log."""
    if session.dist.is_main:
        write_history(session.run_dir, session.progress.history)
    if session.tensorboard is not None:
        session.tensorboard.add(row)
    session.log(format_row(row, session.config.num_epochs(session.steps_per_epoch)))


def end_of_epoch(session: Session, wall_start: float) -> None:
    """Evaluate, record the history row, adjust the plateau, keep the best and last checkpoints."""
    config, progress = session.config, session.progress
    row = measure_row(session, progress.batch)
    progress.wall_seconds += time.perf_counter() - wall_start
    row["wall_seconds"] = progress.wall_seconds
    monitor_split = "val" if "val" in session.eval_loaders else ("test" if config.select_on == "test" else "")
    if config.plateau_factor and monitor_split:
        metric = monitored_value(row, monitor_split, config, session.model)
        if session.plateau.update(metric, row["lr"], config):
            session.log(f"ReduceLROnPlateau: {config.plateau_monitor} has not improved for {config.plateau_patience} "
                        f"epochs; lr x{config.plateau_factor:.4g}"
                        + (" (undone by the per-epoch schedule, as in Keras)" if config.plateau_reset_by_schedule
                           else ""))
    selected = row.get(f"{config.select_on}_acc")
    improved = selected is not None and selected > progress.best_metric
    if improved:
        progress.best_metric, progress.best_epoch = selected, progress.epoch + 1
    progress.history.append(row)  # before the checkpoints, which carry the history
    progress.epoch += 1
    progress.batch = 0
    progress.epoch_loss_sum, progress.epoch_correct, progress.epoch_count, progress.epoch_seconds = 0.0, 0, 0, 0.0
    finished = progress.step >= session.total_steps
    if improved:
        save(session, "best")
    if finished or progress.epoch % max(1, config.checkpoint_every) == 0:
        save(session)
    publish_row(session, row)


def fit(config: TrainConfig, run_dir: str | Path, *, resume: bool = True, overrides: dict[str, Any] | None = None,
        log: Log = print, show_progress: bool | None = None) -> dict[str, Any]:
    """Train (or continue training) into ``run_dir`` and return the results written to ``results.json``.

    ``show_progress``: None shows a bar only on a terminal, False never, True always. While it trains, the run
    directory is locked (``train/lock.py``): a second live run there is refused, a killed run's lock taken over.
    """
    with run_lock(run_dir, log) if distributed.from_environment().is_main else nullcontext():
        session = setup(config, Path(run_dir), resume, overrides or {}, log)
        try:
            return _train(session, show_progress)
        finally:
            if session.tensorboard is not None:
                session.tensorboard.close()
            distributed.stop(session.dist)


def _train(session: Session, show_progress: bool | None) -> dict[str, Any]:
    step_fn = make_train_step(session)
    progress = session.progress
    for line in startup_lines(session):
        session.log(line)
    session.clock = EtaClock(session, session.log)
    with stop_requests() as stop:
        while progress.step < session.total_steps:
            wall_start, whole_epoch = time.perf_counter(), progress.batch == 0
            try:
                stopping = train_epoch(session, step_fn, stop, show_progress)
            except NonFiniteLoss as error:
                kept = list_checkpoints(session.run_dir)
                raise NonFiniteLoss(f"{error} The last good checkpoint: {kept[0] if kept else 'none yet'}") from None
            epoch_done = progress.batch >= min(session.steps_per_epoch,
                                               session.total_steps - progress.epoch * session.steps_per_epoch)
            if epoch_done:
                end_of_epoch(session, wall_start)
                if whole_epoch:
                    session.clock.epoch_end(time.perf_counter() - wall_start)
            else:
                progress.wall_seconds += time.perf_counter() - wall_start
            if stopping:
                if not epoch_done:
                    save(session)
                raise TrainingStopped(session.run_dir, progress.step)
    results = summarize_run(session)
    if session.dist.is_main:
        write_history(session.run_dir, progress.history)  # again: a kill may have come between checkpoint and history
        write_json(session.run_dir / "results.json", results)
    return results


def summarize_run(session: Session) -> dict[str, Any]:
    """Final-epoch numbers and, separately, the test accuracy of the epoch the selection split chose."""
    config, progress = session.config, session.progress
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
        "selection_note": selection_note(config, has_val="val" in session.eval_loaders),
        "wall_seconds": progress.wall_seconds, "run_dir": str(session.run_dir),
    }


def selection_note(config: TrainConfig, has_val: bool) -> str:
    if config.select_on == "test":
        return "model selected on the TEST set, as the Keras tutorial does: its test accuracy is optimistic"
    if has_val:
        return "model selected on the validation split"
    return "no validation split: the final model is the result, nothing selected (as DRL section 4.2 reports)"
