"""The same configuration trained with several seeds, summarised as mean +- standard deviation: one number
from one seed says little, and run-to-run spread is the first question about any published accuracy."""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from resnetlab.errors import UserError
from resnetlab.train.concurrent import Job, chunks, fit_concurrently, raise_for, resolve_concurrency
from resnetlab.train.config import TrainConfig
from resnetlab.files import atomic_write_text, write_json
from resnetlab.train.loop import Log, fit

SUMMARY_KEYS = ("final_test_acc", "selected_test_acc", "final_val_acc", "final_train_error", "wall_seconds")


class MeanStd(NamedTuple):
    mean: float | None
    std: float | None  # the sample standard deviation; 0 for one value
    n: int


def mean_std(values: Iterable[float | None]) -> MeanStd:
    """Mean and sample standard deviation of the values that are neither None nor NaN/infinite."""
    kept = [v for v in values if v is not None and math.isfinite(v)]
    if not kept:
        return MeanStd(None, None, 0)
    return MeanStd(statistics.fmean(kept), statistics.stdev(kept) if len(kept) > 1 else 0.0, len(kept))


def check_distinct_seeds(seeds: list[int]) -> None:
    """A seed given twice would be one run counted twice in mean +- std."""
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise UserError(f"seed {repeated[0]} is given twice (each seed is one run, counted once in mean +- std)")


def fit_seeds(config: TrainConfig, out: str | Path, seeds: list[int], *, log: Log = print,
              show_progress: bool | None = None, overrides: dict[str, Any] | None = None,
              concurrent: int | str = 1, resume: bool = True) -> dict[str, Any]:
    """Train ``out/seed-<s>`` for each seed (finished runs are not redone) and write ``out/summary.{json,md}``.

    ``concurrent``: seeds trained side by side (``train/concurrent.py``; ``auto``: all of them on CUDA).
    ``resume``: False starts every seed's run anew, as ``fit``'s."""
    check_distinct_seeds(seeds)
    out = Path(out)
    jobs = [Job(dataclasses.replace(config, seed=seed), out / f"seed-{seed}", {**(overrides or {}), "seed": seed},
                resume=resume) for seed in seeds]
    count = resolve_concurrency(concurrent, config.device, len(jobs))
    results = []
    for group in chunks(jobs, count):
        if count == 1:
            log(f"--- seed {group[0].config.seed} ---")
            results.append(fit(group[0].config, group[0].run_dir, resume=resume, overrides=group[0].overrides,
                               log=log, show_progress=show_progress))
            continue
        outcomes = fit_concurrently(group, log=log)
        raise_for(outcomes)
        results += [outcome.results for outcome in outcomes]
    summary = {"model": config.model, "seeds": seeds, "runs": results,
               **{key: mean_std(r.get(key) for r in results)._asdict() for key in SUMMARY_KEYS}}
    write_json(out / "summary.json", summary)
    lines = [f"# {config.model}: {len(seeds)} seeds ({', '.join(map(str, seeds))})", "",
             "| metric | mean | std | n |", "|---|---:|---:|---:|"]
    for key in SUMMARY_KEYS:
        stats = summary[key]
        if stats["n"]:
            scale, unit = (100, " %") if key != "wall_seconds" else (1, " s")
            lines.append(f"| {key} | {stats['mean'] * scale:.2f}{unit} | {stats['std'] * scale:.2f}{unit} | "
                         f"{stats['n']} |")
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    return summary
