"""The training loop, one for every recipe, in the shape of torchvision's reference script. ``fit`` reads top to
bottom: lock the run directory, ``start_run`` (``load_data``, ``build_model``, ``build_optimizer``, ``restore``
from the newest checkpoint: train/build.py), then epochs of ``train_one_epoch`` followed by ``end_epoch`` (``evaluate`` on val and
test, a history row, the best and last checkpoints), and ``finish``.

The public functions, each taking the one ``Run`` object that holds a run's whole state (``train/run.py``):

- ``start_run(config, run_dir, ...) -> Run``: a new run, or the newest checkpoint's, ready to train;
- ``begin_epoch(run)``, then ``train_step(run, images, labels, stop) -> bool`` once per batch of
  ``run.train_loader.epoch(run.progress.epoch, run.progress.batch)`` (one optimizer step and its bookkeeping; True
  when the epoch is done or a stop was agreed), then ``end_epoch_steps(run)``: what ``train_one_epoch`` does;
- ``end_epoch(run)``: evaluation, history row, plateau, checkpoints (when ``run.epoch_done``);
- ``stop_run(run)``: the checkpoint of a run stopped mid-epoch; ``finish(run)``: ``results.json``;
- ``close_run(run)``: TensorBoard and the process group.

A driver that trains several runs in one process can interleave ``train_step`` calls of different runs with
these; nothing here is global. Speed habits (airbench): the dataset sits on the device and is augmented there in
batches; the step runs under bf16 autocast where the device computes bf16 natively, with channels_last; the host
waits for the device only every ``log_every`` steps, when the window of per-step losses is read back (which also
finds the exact step of a non-finite loss).
"""

from __future__ import annotations

import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnetlab.data.augment import resize_batch
from resnetlab.data.loader import SharedData
from resnetlab.errors import CheckpointError
from resnetlab.files import write_json
from resnetlab.models import model_info
from resnetlab.train import distributed
from resnetlab.train.build import build_model, load_data, restore
from resnetlab.train.checkpoint import clean_temporary, list_checkpoints, load_latest
from resnetlab.train.config import TrainConfig
from resnetlab.train.resume import resume_config
from resnetlab.train.environment import keep_freed_memory_for_reuse, pick_device, seed_everything
from resnetlab.train.evaluate import evaluate
from resnetlab.train.finetune import prepare_model
from resnetlab.train.graphs import graphed_if_supported
from resnetlab.train.history import write_history
from resnetlab.train.lock import run_lock
from resnetlab.train.optim import build_optimizer, current_lr, set_lr
from resnetlab.train.precision import choose_precision
from resnetlab.train.preflight import check_image_size, check_model_takes_images, write_run_records
from resnetlab.train.run import EpochState, Run, save, summarize_run
from resnetlab.train.runlog import Log, RunLog
from resnetlab.train.schedule import WarmupState, effective_lr, monitored_value, train_side, warmup_applies
from resnetlab.train.step import LossWindow, NonFiniteLoss, StepFn, TrainingStopped, build_train_step, stop_requests

__all__ = ["Log", "NonFiniteLoss", "Run", "TrainingStopped", "begin_epoch", "build_model", "build_optimizer",
           "build_train_step", "close_run", "end_epoch", "end_epoch_steps", "evaluate", "finish", "fit",
           "load_data", "restore", "start_run", "stop_run", "train_one_epoch", "train_step"]


def fit(config: TrainConfig, run_dir: str | Path, *, resume: bool = True, overrides: dict[str, Any] | None = None,
        log: Log = print, show_progress: bool | None = None) -> dict[str, Any]:
    """Train (or continue training) into ``run_dir`` and return the results written to ``results.json``.

    ``show_progress``: None shows a bar only on a terminal, False never, True always. While it trains, the run
    directory is locked (``train/lock.py``): a second live run there is refused, a killed run's lock taken over.
    """
    with run_lock(run_dir, log) if distributed.from_environment().is_main else nullcontext():
        run = start_run(config, run_dir, resume=resume, overrides=overrides, log=log, show_progress=show_progress)
        try:
            with stop_requests() as stop:
                while not run.finished:
                    stopping = train_one_epoch(run, stop)
                    if run.epoch_done:
                        end_epoch(run)
                    else:
                        run.progress.wall_seconds += time.perf_counter() - run.epoch.wall_start
                    if stopping:
                        stop_run(run)
            return finish(run)
        finally:
            close_run(run)


def start_run(config: TrainConfig, run_dir: str | Path, *, resume: bool = True,
              overrides: dict[str, Any] | None = None, log: Log = print, show_progress: bool | None = None,
              shared: SharedData | None = None) -> Run:
    """A run ready to train: the newest loadable checkpoint's (its stored config, with ``overrides`` applied under
    ``resume_config``'s rules) when ``resume`` finds one, else a new one whose config and environment are written
    to ``run_dir``. ``shared``: data loaded and placed on the device once for runs trained side by side
    (``train/concurrent.py``)."""
    run_dir = Path(run_dir)
    dist = distributed.from_environment()
    if dist.is_main:  # only the writer may clear what killed writes left behind
        clean_temporary(run_dir)
    checkpoint = load_latest(run_dir, report=log) if resume else None
    if resume and checkpoint is None and list_checkpoints(run_dir):
        raise CheckpointError(f"{run_dir}: no loadable checkpoint (all are corrupt); move them away to start anew")
    if checkpoint is not None:
        config = resume_config(checkpoint.state["config"], overrides or {}, log, run_dir)
        log(f"resuming {run_dir} from step {checkpoint.step} ({checkpoint.path.name})")
    config.validate()
    check_image_size(config)  # also an unknown name or impossible depth: fails before any data is loaded
    distributed.per_rank_batch(config.batch_size, dist)  # refused before any process group is joined
    runlog = RunLog(run_dir, log, is_main=dist.is_main, show_progress=show_progress, tensorboard=config.tensorboard)
    device = pick_device(config.device)
    if device.type == "cuda" and dist.enabled:
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    distributed.start(dist, device)
    seed_everything(config.seed, config.deterministic)
    if device.type == "cpu":
        keep_freed_memory_for_reuse()
    precision = choose_precision(config.amp, device)  # train/precision.py: bf16 only where it is native
    runlog.line(precision.line())

    normalizer, train_loader, eval_loaders, classes = load_data(config, device, dist, checkpoint,
                                                                   runlog.line if dist.is_main else None, shared)
    model = build_model(config, len(classes), device, dist)
    prepare_model(model, config.init, config.freeze, checkpoint is None,  # train/finetune.py: --init, --freeze
                  runlog.line if dist.is_main else lambda _: None, list(classes))
    if checkpoint is None:
        check_model_takes_images(model, config, device)
    run = Run(config, run_dir, device, precision, model, model, build_optimizer(model, config, device), normalizer,
              classes, train_loader, eval_loaders, runlog, dist=dist,
              warmup=WarmupState(active=warmup_applies(config, model_info(config.model).depth)))
    if checkpoint is not None:
        restore(run, checkpoint)
    run.train_model = torch.compile(model) if config.compile else model
    if dist.enabled:
        run.train_model = nn.parallel.DistributedDataParallel(
            run.train_model, device_ids=[device.index] if device.type == "cuda" else None)
    run.step_fn = make_train_step(run)
    if checkpoint is None and dist.is_main:  # only now: a run refused above leaves no records (train/preflight.py)
        write_run_records(run_dir, config, device, precision)
    runlog.start(run)
    return run


def make_train_step(run: Run) -> StepFn:
    """The eager step, replayed as a CUDA graph where ``config.cuda_graphs`` and the setup allow (graphs.py)."""
    config = run.config
    step = build_train_step(run.train_model, run.optimizer, config, run.device, run.amp, run.model)
    step, chosen = graphed_if_supported(step, run.model, run.optimizer, config.cuda_graphs, device=run.device,
                                        distributed=run.dist.enabled,
                                        checkpointing=bool(config.activation_checkpointing),
                                        deterministic=config.deterministic,
                                        resizing=bool(config.progressive_sizes), log=run.log.line)
    if run.device.type == "cuda":
        run.log.line(chosen)
    return step


def train_one_epoch(run: Run, stop: threading.Event | None = None) -> bool:
    """Run the current epoch from ``progress.batch`` until its end, the end of training or a stop request.
    Returns whether to stop now (agreed by all processes)."""
    begin_epoch(run)
    for images, labels in run.train_loader.epoch(run.progress.epoch, run.progress.batch):
        if train_step(run, images, labels, stop):
            break
    end_epoch_steps(run)
    return run.epoch.stopping


def begin_epoch(run: Run) -> None:
    run.epoch = EpochState(LossWindow(max(1, run.config.log_every), run.device), whole=run.progress.batch == 0,
                           window_step=run.progress.step)
    run.log.begin_epoch(run.progress.epoch, run.steps_this_epoch, run.progress.batch)


def train_step(run: Run, images: torch.Tensor, labels: torch.Tensor, stop: threading.Event | None = None) -> bool:
    """One optimizer step at the scheduled learning rate, then its bookkeeping: every ``log_every`` steps (and at
    the epoch's end, a stop request or a history point) the losses are read back, summed over processes and shown.
    The paper's warm-up counts every step and checks at its own cadence (``WarmupState``), not at these.
    Returns True when the epoch's loop should end (done, or a stop agreed on)."""
    config, progress, epoch = run.config, run.progress, run.epoch
    images = resize_batch(images, train_side(config, progress.step, run.total_steps))  # progressive resizing
    lr = effective_lr(config, progress.step, run.steps_per_epoch, run.warmup, run.plateau)
    set_lr(run.optimizer, lr)
    loss, correct = run.step_fn(images, labels)
    epoch.window.add(loss, correct, labels.shape[0])
    run.warmup.after_step(progress.step + 1, correct, labels.shape[0], config,
                          reduce=lambda values: distributed.sum_across(values, run.dist, run.device))
    progress.step += 1
    progress.batch += 1
    done = run.epoch_done
    history_point = config.eval_every > 0 and progress.step % config.eval_every == 0 and not done
    requested = stop is not None and stop.is_set()
    # One process alone must never stop early (the others would wait for it forever): with several processes a
    # stop request is only acted on at a flush, where all of them agree on it.
    epoch.stopping = requested and not run.dist.enabled
    if epoch.window.full() or done or epoch.stopping or history_point:
        try:
            loss_sum, n_correct, n_images = epoch.window.flush(epoch.window_step, progress.epoch)
        except NonFiniteLoss as error:
            kept = list_checkpoints(run.run_dir)
            raise NonFiniteLoss(f"{error} The last good checkpoint: {kept[0] if kept else 'none yet'}") from None
        loss_sum, n_correct, n_images = distributed.sum_across([loss_sum, n_correct, n_images], run.dist, run.device)
        n_correct, n_images = int(n_correct), int(n_images)
        epoch.stopping = distributed.any_across(requested, run.dist, run.device)
        progress.epoch_loss_sum += loss_sum
        progress.epoch_correct += n_correct
        progress.epoch_count += n_images
        run.log.window(progress.step, progress.step - epoch.window_step, loss_sum, n_correct, n_images, lr,
                       time.perf_counter() - epoch.window_start)
        epoch.window_start, epoch.window_step = time.perf_counter(), progress.step
    if history_point:
        progress.epoch_seconds += time.perf_counter() - epoch.started
        row = {**measure_row(run), "partial": True}
        progress.history.append(row)
        run.log.row(progress.history, row, run.config.num_epochs(run.steps_per_epoch))
        epoch.started = epoch.window_start = time.perf_counter()
    return done or epoch.stopping


def end_epoch_steps(run: Run) -> None:
    run.progress.epoch_seconds += time.perf_counter() - run.epoch.started
    run.log.end_epoch_steps()


def measure_row(run: Run) -> dict[str, Any]:
    """One history row now: the epoch's training loss and accuracy so far, and ``evaluate`` over val and test."""
    progress = run.progress
    fraction = progress.batch / max(1, run.steps_this_epoch)
    row: dict[str, Any] = {"epoch": progress.epoch + 1 if fraction >= 1 else round(progress.epoch + fraction, 4),
                           "step": progress.step, "lr": current_lr(run.optimizer)}
    count = max(1, progress.epoch_count)
    row.update(train_loss=progress.epoch_loss_sum / count, train_acc=progress.epoch_correct / count)
    row["train_error"] = 1 - row["train_acc"]
    for split, loader in run.eval_loaders.items():
        result = evaluate(run.model, loader.epoch(0), len(run.classes), run.device, run.amp,
                          flip=run.config.eval_flip)
        row.update({f"{split}_loss": result.loss, f"{split}_acc": result.accuracy, f"{split}_error": result.error})
        if result.flip_accuracy is not None:
            row[f"{split}_acc_flip"] = result.flip_accuracy
    row["epoch_seconds"] = progress.epoch_seconds
    row["images_per_sec"] = progress.epoch_count / max(progress.epoch_seconds, 1e-9)
    return row


def end_epoch(run: Run) -> None:
    """Evaluate, record the history row, adjust the plateau, keep the best and last checkpoints."""
    config, progress, wall_start = run.config, run.progress, run.epoch.wall_start
    row = measure_row(run)
    progress.wall_seconds += time.perf_counter() - wall_start
    row["wall_seconds"] = progress.wall_seconds
    monitor_split = "val" if "val" in run.eval_loaders else ("test" if config.select_on == "test" else "")
    if config.plateau_factor and monitor_split:
        metric = monitored_value(row, monitor_split, config, run.model)
        if run.plateau.update(metric, row["lr"], config):
            run.log.line(f"ReduceLROnPlateau: {config.plateau_monitor} has not improved for "
                         f"{config.plateau_patience} epochs; lr x{config.plateau_factor:.4g}"
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
    if improved:
        save(run, "best")
    if run.finished or progress.epoch % max(1, config.checkpoint_every) == 0:
        save(run)
    run.log.row(progress.history, row, config.num_epochs(run.steps_per_epoch))
    if run.epoch.whole:
        run.log.epoch_time(time.perf_counter() - wall_start, row["epoch_seconds"])


def stop_run(run: Run) -> None:
    """A stop was requested: keep a checkpoint at this step (unless the epoch's end just wrote one), then say how
    to go on."""
    kept = list_checkpoints(run.run_dir)
    if not kept or kept[0].name != f"step-{run.progress.step:08d}":  # with checkpoint_every > 1 it may not have
        save(run)
    raise TrainingStopped(run.run_dir, run.progress.step)


def finish(run: Run) -> dict[str, Any]:
    """The run's results (``results.json``), and its history once more: a kill may have come between the last
    checkpoint and the history files."""
    results = summarize_run(run)
    if run.dist.is_main:
        write_history(run.run_dir, run.progress.history)
        write_json(run.run_dir / "results.json", results)
    return results


def close_run(run: Run) -> None:
    run.log.close()
    distributed.stop(run.dist)

