"""The same configuration trained with several seeds, summarised as mean +- standard deviation: one number
from one seed says little, and run-to-run spread is the first question about any published accuracy."""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path
from typing import Any

from resnetlab.train.config import TrainConfig
from resnetlab.train.history import atomic_write_text, write_json
from resnetlab.train.loop import Log, fit

SUMMARY_KEYS = ("final_test_acc", "selected_test_acc", "final_val_acc", "final_train_error", "wall_seconds")


def mean_std(values: list[float]) -> dict[str, float | int | None]:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def fit_seeds(config: TrainConfig, out: str | Path, seeds: list[int], *, log: Log = print,
              show_progress: bool | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train ``out/seed-<s>`` for each seed (finished runs are not redone) and write ``out/summary.{json,md}``."""
    out = Path(out)
    results = []
    for seed in seeds:
        log(f"--- seed {seed} ---")
        seed_overrides = {**(overrides or {}), "seed": seed}
        results.append(fit(dataclasses.replace(config, seed=seed), out / f"seed-{seed}", overrides=seed_overrides,
                           log=log, show_progress=show_progress))
    summary = {"model": config.model, "seeds": seeds, "runs": results,
               **{key: mean_std([r.get(key) for r in results]) for key in SUMMARY_KEYS}}
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
