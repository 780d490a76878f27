"""A sweep of training runs that differ only in the model (and seed): ``exp_dir/runs/<tag>-seed<s>/``.

Every run is a plain ``fit`` into its own directory, so a killed sweep continues where it stopped (``fit``
resumes the interrupted run from its checkpoint) and a run that finished is not touched again: its directory
holds a ``sweep.json`` with the exact config that finished there.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnetlab.files import write_json
from resnetlab.train.concurrent import Job, chunks, fit_concurrently, raise_for, resolve_concurrency
from resnetlab.train.config import TrainConfig
from resnetlab.train.history import read_history
from resnetlab.train.loop import Log, TrainingStopped, fit
from resnetlab.train.seeds import MeanStd, mean_std

DONE_FILE = "sweep.json"


class SweepStopped(TrainingStopped):
    """A stop request (SIGTERM, Ctrl-C) inside a sweep: rerunning the same command continues it."""

    def __init__(self, stopped: TrainingStopped) -> None:
        super().__init__(stopped.run_dir, stopped.step)
        self.args = ((f"stopped in {stopped.run_dir} at step {stopped.step} (checkpoint saved); rerun the same "
                     "command to continue the sweep"),)


@dataclass(frozen=True)
class RunSpec:
    """One training run of a sweep: a model, a seed, the group (table row, curve) it belongs to, and any other
    config field that makes this group differ (e.g. ``{"shortcut": "B"}``)."""

    model: str
    seed: int
    group: str  # e.g. "plain20", "resnet20-B": also the run directory's prefix
    label: str  # what tables and legends show, e.g. "plain-20", "ResNet-20 (B)"
    changes: tuple[tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        return f"{self.group}-seed{self.seed}"

    def config(self, base: TrainConfig) -> TrainConfig:
        return dataclasses.replace(base, model=self.model, seed=self.seed, **dict(self.changes)).validate()


@dataclass
class RunResult:
    spec: RunSpec
    run_dir: Path
    results: dict[str, Any]
    history: list[dict[str, Any]]

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


@dataclass
class GroupResult:
    """All seeds of one group: final errors as (mean, std, n) fractions and the seed-mean curves."""

    group: str
    label: str
    model: str
    runs: list[RunResult]
    train_error: MeanStd = MeanStd(None, None, 0)
    test_error: MeanStd = MeanStd(None, None, 0)
    steps: list[int] = field(default_factory=list)
    train_curve: list[float | None] = field(default_factory=list)
    test_curve: list[float | None] = field(default_factory=list)


def _fingerprint(config: TrainConfig) -> dict[str, Any]:
    return json.loads(json.dumps(config.to_dict()))


def is_done(run_dir: Path, config: TrainConfig) -> bool:
    """Finished with exactly this config (so neither retrained nor even reloaded)."""
    marker = run_dir / DONE_FILE
    if not (marker.exists() and (run_dir / "results.json").exists()):
        return False
    return json.loads(marker.read_text()).get("config") == _fingerprint(config)


def run_sweep(exp_dir: Path, base: TrainConfig, specs: list[RunSpec], *, log: Log = print,
              show_progress: bool | None = None, concurrent: int | str = 1) -> list[RunResult]:
    """Train every spec (skipping finished runs); returns each run's results and history, in spec order.

    ``concurrent``: how many runs train side by side (``train/concurrent.py``); ``auto``: all of them on CUDA,
    one after another on a CPU."""
    count = resolve_concurrency(concurrent, base.device, len(specs))
    if count > 1:
        train_side_by_side(exp_dir, base, specs, count, log)
    outcomes = []
    for index, spec in enumerate(specs, 1):
        run_dir = exp_dir / "runs" / spec.name
        config = spec.config(base)
        if is_done(run_dir, config):
            log(f"[{index}/{len(specs)}] {spec.name}: finished earlier, kept")
        else:
            log(f"[{index}/{len(specs)}] {spec.name}: training {config.model} (seed {config.seed})")
            # On resume the checkpoint's config rules; passing the whole intended config as overrides makes it
            # this sweep's config again (only the length can differ: the experiment refuses other changes).
            try:
                fit(config, run_dir, overrides=config.to_dict(), log=log, show_progress=show_progress)
            except TrainingStopped as stopped:
                raise SweepStopped(stopped) from None
            write_json(run_dir / DONE_FILE, {"config": _fingerprint(config)})
        results = json.loads((run_dir / "results.json").read_text())
        outcomes.append(RunResult(spec, run_dir, results, read_history(run_dir)))
    return outcomes


def train_side_by_side(exp_dir: Path, base: TrainConfig, specs: list[RunSpec], count: int, log: Log) -> None:
    """Train the unfinished specs ``count`` at a time; a failed run (non-finite loss) is raised after the others
    have finished, a stop request once every run has its checkpoint."""
    pending = [(spec, spec.config(base)) for spec in specs if not is_done(exp_dir / "runs" / spec.name,
                                                                           spec.config(base))]
    failed = []
    for group in chunks(pending, count):
        log(f"training side by side: {', '.join(spec.name for spec, _ in group)}")
        jobs = [Job(config, exp_dir / "runs" / spec.name, overrides=config.to_dict()) for spec, config in group]
        outcomes = fit_concurrently(jobs, log=log)
        for outcome, (_, config) in zip(outcomes, group):
            if outcome.results is not None:
                write_json(outcome.job.run_dir / DONE_FILE, {"config": _fingerprint(config)})
        stopped = [outcome.stopped for outcome in outcomes if outcome.stopped]
        if stopped:
            raise SweepStopped(stopped[0])
        failed += [outcome for outcome in outcomes if outcome.error]
    raise_for(failed)


def run_records(outcomes: list[RunResult]) -> list[dict[str, Any]]:
    """What ``experiment.json`` keeps of each run."""
    return [{"name": o.spec.name, "model": o.spec.model, "seed": o.spec.seed, "group": o.spec.group,
             "run_dir": str(o.run_dir), "steps": o.results.get("steps"), "epochs": o.results.get("epochs"),
             "wall_seconds": o.results.get("wall_seconds")} for o in outcomes]


def group_results(outcomes: list[RunResult]) -> dict[str, GroupResult]:
    """Seeds of a group pooled: mean ± std of the final errors, and curves averaged step by step."""
    groups: dict[str, GroupResult] = {}
    for outcome in outcomes:
        spec = outcome.spec
        groups.setdefault(spec.group, GroupResult(spec.group, spec.label, spec.model, [])).runs.append(outcome)
    for group in groups.values():
        group.train_error = mean_std(run.final.get("train_error") for run in group.runs)
        group.test_error = mean_std(run.final.get("test_error") for run in group.runs)
        shared = set.intersection(*({row["step"] for row in run.history} for run in group.runs))
        group.steps = sorted(shared)
        for key, curve in (("train_error", group.train_curve), ("test_error", group.test_curve)):
            for step in group.steps:
                curve.append(mean_std(row.get(key) for run in group.runs for row in run.history
                                      if row["step"] == step).mean)
    return groups
