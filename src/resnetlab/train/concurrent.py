"""Several training runs in one process on one device, each exactly what it would be alone.

Small CIFAR nets at batch 128 leave most of a GPU idle, so the runs of a sweep take turns: the driver below calls
the training loop's own per-step and end-of-epoch functions (``loop.train_step``, ``end_epoch``, ...) for each
run in turn, round-robin, in the order ``loop.fit`` calls them for one run. On CUDA each run replays its own
captured CUDA graph on its own stream, so the kernels of different runs overlap on the device while the host
issues the next run's step (mechanism (a) of the issue; why not horizontal fusion is argued in
benchmarks/README.md). What stays each run's own: its run directory, config, lock, history, checkpoints and
resume (``loop.start_run`` as for one run), its data order and augmentation (drawn from its seed, epoch and batch
alone) and its global RNG state, swapped in around each of its steps. What is shared: the
dataset, loaded once, and each split placed on the device once (``data.loader.SharedData``).

Faults stay local: a run whose loss becomes non-finite stops alone, with its usual message and its last good
checkpoint, while the others go on; a stop request (SIGTERM, Ctrl-C) stops every run at its next step with a
checkpoint; a SIGKILL leaves each run as resumable as a run alone, and a restart resumes them all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from resnetlab.data.loader import SharedData
from resnetlab.errors import UserError
from resnetlab.train import distributed
from resnetlab.train.config import TrainConfig
from resnetlab.train.environment import pick_device
from resnetlab.train.lock import run_lock
from resnetlab.train.loop import (Log, NonFiniteLoss, Run, TrainingStopped, begin_epoch, close_run, end_epoch,
                                  end_epoch_steps, finish, start_run, stop_run, train_step)
from resnetlab.train.step import stop_requests


def resolve_concurrency(value: str | int, device: str, runs: int) -> int:
    """``auto``: every run at once on CUDA, one after another on a CPU (measured: benchmarks/README.md); or N."""
    if str(value) == "auto":
        return max(1, runs) if pick_device(device).type == "cuda" else 1
    try:
        count = int(value)
    except ValueError:
        raise UserError(f"--concurrent takes auto or a number of runs, got {value!r}") from None
    if count < 1:
        raise UserError(f"--concurrent must be at least 1, got {count}")
    return count


@dataclass
class Job:
    """One run to train: what ``fit`` takes."""

    config: TrainConfig
    run_dir: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    resume: bool = True


@dataclass
class Outcome:
    """How a job ended: its results, or the error that stopped it alone (a non-finite loss)."""

    job: Job
    results: dict[str, Any] | None = None
    error: NonFiniteLoss | None = None
    stopped: TrainingStopped | None = None


@dataclass
class _Active:
    job: Job
    run: Run
    rng: torch.Tensor
    stream: Any
    batches: Iterator | None = None  # the epoch in progress, or None between epochs


def fit_concurrently(jobs: list[Job], *, log: Log = print) -> list[Outcome]:
    """Train ``jobs`` side by side (see the module docstring); returns one outcome per job, in order.

    A stop request stops and checkpoints every run (outcomes with ``stopped``); a non-finite loss is an outcome
    with ``error``, and the other runs train on to their end. ``raise_for`` turns outcomes into the exceptions a
    run alone would have raised.
    """
    if distributed.from_environment().enabled:
        raise UserError("concurrent runs share one process; under torchrun train them one at a time")
    if len({job.config.deterministic for job in jobs}) > 1:
        raise UserError("concurrent runs must agree on --deterministic (a process-wide setting)")
    if len({str(pick_device(job.config.device)) for job in jobs}) > 1:
        raise UserError("concurrent runs must train on one device")
    shared = SharedData()
    outcomes = {id(job): Outcome(job) for job in jobs}
    active: list[_Active] = []
    with ExitStack() as stack:
        stop = stack.enter_context(stop_requests())
        stack.callback(lambda: [_finish(entry) for entry in active])
        for job in jobs:
            active.append(_start(job, shared, stack, log))
        while active:
            for entry in list(active):
                outcome = outcomes[id(entry.job)]
                try:
                    if _step(entry, stop):
                        continue
                    outcome.results = finish(entry.run)
                except NonFiniteLoss as error:
                    outcome.error = error
                    entry.run.log.line(f"stopped alone: {error}")
                except TrainingStopped as stopped:
                    outcome.stopped = stopped
                active.remove(entry)
                _finish(entry)
    return [outcomes[id(job)] for job in jobs]


def raise_for(outcomes: list[Outcome]) -> None:
    """A stop request first (every run is checkpointed: rerunning continues them all), then a failed run."""
    for kind in ("stopped", "error"):
        found = [getattr(outcome, kind) for outcome in outcomes if getattr(outcome, kind)]
        if found:
            raise found[0]


def chunks(items: list, size: int) -> list[list]:
    return [items[start:start + size] for start in range(0, len(items), max(1, size))]


def _start(job: Job, shared: SharedData, stack: ExitStack, log: Log) -> _Active:
    """Lock and start one run (as ``fit`` does) and keep its RNG state, before the next run reseeds."""
    name = Path(job.run_dir).name

    def run_log(message: str) -> None:
        log(f"[{name}] {message}")

    stack.enter_context(run_lock(job.run_dir, run_log))
    run = start_run(job.config, job.run_dir, resume=job.resume, overrides=job.overrides, log=run_log,
                    show_progress=False, shared=shared)
    stream = None
    if run.device.type == "cuda":
        stream = torch.cuda.Stream(run.device)
        stream.wait_stream(torch.cuda.current_stream(run.device))  # the shared data was placed on this one
    return _Active(job, run, torch.get_rng_state(), stream)


def _step(entry: _Active, stop: threading.Event) -> bool:
    """One step of one run, on its own stream and with its own global RNG state, and what ends its epoch (the
    order of ``fit``: end_epoch_steps, end_epoch or the wall time of a part-epoch, stop_run). False once the run
    has finished; raises what ``fit`` would raise (a stop, a non-finite loss)."""
    run = entry.run
    if run.finished:
        return False
    torch.set_rng_state(entry.rng)
    try:
        with torch.cuda.stream(entry.stream) if entry.stream is not None else nullcontext():
            if entry.batches is None:
                begin_epoch(run)
                entry.batches = iter(run.train_loader.epoch(run.progress.epoch, run.progress.batch))
            images, labels = next(entry.batches)
            if train_step(run, images, labels, stop):
                entry.batches = None
                end_epoch_steps(run)
                if run.epoch_done:
                    end_epoch(run)
                else:
                    run.progress.wall_seconds += time.perf_counter() - run.epoch.wall_start
                if run.epoch.stopping:
                    stop_run(run)
    finally:
        entry.rng = torch.get_rng_state()
    return not run.finished


def _finish(entry: _Active) -> None:
    if entry.stream is not None:
        torch.cuda.current_stream(entry.run.device).wait_stream(entry.stream)
    close_run(entry.run)
