"""The shared machinery of the training comparisons (degradation, shortcut options, v1 vs pre-activation): train
a sweep, pool seeds, then write the table (CSV + Markdown from the same strings), the error curves (PNG + CSV),
the verdict of each claim and ``experiment.json``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnetlab.experiments.figures import Curve, plot_error_panels
from resnetlab.experiments.records import (check_rerun, data_text, length_text, preflight, setup_rows,
                                           write_experiment)
from resnetlab.experiments.render import publish_results
from resnetlab.experiments.sweep import GroupResult, RunSpec, group_results, run_records, run_sweep
from resnetlab.experiments.tables import DASH, Table, fixed, plus_minus
from resnetlab.train.config import TrainConfig
from resnetlab.train.loop import Log

RESULT_COLUMNS = ["group", "model", "label", "seeds", "train_error_pct", "train_error_std", "test_error_pct",
                  "test_error_std", "paper_test_error_pct", "paper_source"]
MEASUREMENT_NOTE = ("Train error is the error over the last epoch's training batches, measured with augmentation "
                    "while the weights change (as the paper's training curves are); test error is the last epoch's "
                    "evaluation on the whole test set, with no model selection. Errors in %, mean ± sample std "
                    "over seeds where there are several.")


# The rule for a verdict: the paper's claims are about its full schedule (DRL section 4.2: 64k iterations). Runs
# shorter than a tenth of it (6,400 iterations, ~18 epochs of 45k images at batch 128) are still early in
# training, where the order of the curves can change, so their claims read "too short to judge" (the numbers
# are still printed) instead of yes / no.
PAPER_ITERATIONS = 64_000
JUDGE_MIN_FRACTION = 0.1


def too_short_to_judge(steps: int | None) -> str | None:
    """The answer to a claim about nets trained ``steps`` iterations when that is too few to judge (the rule
    above), else None."""
    if steps is None or steps >= JUDGE_MIN_FRACTION * PAPER_ITERATIONS:
        return None
    return (f"too short to judge ({steps:,} iterations; a verdict needs at least "
            f"{JUDGE_MIN_FRACTION * PAPER_ITERATIONS:,.0f}, a tenth of the paper's {PAPER_ITERATIONS:,})")


@dataclass(frozen=True)
class Claim:
    """``left`` group's error on ``split`` is ``relation`` (">" or "<") the ``right`` group's."""

    left: str
    split: str  # "train" or "test"
    relation: str
    right: str


@dataclass
class Verdict:
    claim: str
    left: str  # the two numbers exactly as the table prints them
    right: str
    relation: str
    within_spread: bool = False
    steps: int | None = None  # the fewest iterations any run of the two groups trained

    @property
    def holds(self) -> bool | None:
        if not self.left or not self.right:
            return None
        a, b = float(self.left), float(self.right)
        return a > b if self.relation == ">" else a < b

    @property
    def answer(self) -> str:
        short = too_short_to_judge(self.steps)
        if short and self.holds is not None:
            return short
        return {True: "yes", False: "no", None: "unknown (missing numbers)"}[self.holds]

    def line(self) -> str:
        text = f"{self.claim}: {self.answer}"
        if self.holds is not None:
            text += f", {self.left} % vs {self.right} %" + (" (equal)" if float(self.left) == float(self.right) else "")
        return text + (" (the difference is within the seed-to-seed std: not conclusive)" if self.within_spread
                       else "")


@dataclass
class Comparison:
    """What one comparison trains and how its results are laid out."""

    kind: str
    title: str  # the section title, citing the paper
    short_title: str  # the figure's title, before the data/recipe part
    specs: list[RunSpec]
    panels: list[tuple[str, list[str]]]  # (panel title, groups drawn in it)
    colours: dict[str, int]  # group -> colour index
    paper: dict[str, tuple[str, str]]  # group -> (paper test error "" if none, source or reason)
    claims: list[Claim]
    notes: list[str] = field(default_factory=list)
    setup_rows: list[tuple[str, str]] = field(default_factory=list)


def result_table(comparison: Comparison, groups: dict[str, GroupResult]) -> Table:
    table = Table(RESULT_COLUMNS, view=[
        ("model", lambda r: r["label"]),
        ("seeds", lambda r: r["seeds"]),
        ("train error (%)", lambda r: plus_minus(r["train_error_pct"], r["train_error_std"], r["seeds"])),
        ("test error (%)", lambda r: plus_minus(r["test_error_pct"], r["test_error_std"], r["seeds"])),
        ("paper test error (%)", lambda r: r["paper_test_error_pct"] or f"{DASH} ({r['paper_source']})"),
        ("paper source", lambda r: r["paper_source"] if r["paper_test_error_pct"] else ""),
    ])
    for name, group in groups.items():
        paper_value, source = comparison.paper.get(name, ("", "not in the paper"))
        (train, train_std, seeds), (test, test_std, _) = group.train_error, group.test_error
        table.add(group=name, model=group.model, label=group.label, seeds=seeds,
                  train_error_pct=fixed(train, 2, 100), train_error_std=fixed(train_std, 2, 100),
                  test_error_pct=fixed(test, 2, 100), test_error_std=fixed(test_std, 2, 100),
                  paper_test_error_pct=paper_value, paper_source=source)
    return table


def runs_table(groups: dict[str, GroupResult]) -> Table:
    table = Table(["run", "group", "model", "seed", "steps", "epochs", "train_error_pct", "test_error_pct",
                   "wall_seconds"])
    for group in groups.values():
        for run in group.runs:
            table.add(run=run.spec.name, group=group.group, model=run.spec.model, seed=run.spec.seed,
                      steps=run.results.get("steps"), epochs=run.results.get("epochs"),
                      train_error_pct=fixed(run.final.get("train_error"), 2, 100),
                      test_error_pct=fixed(run.final.get("test_error"), 2, 100),
                      wall_seconds=fixed(run.results.get("wall_seconds"), 1))
    return table


def verdicts(comparison: Comparison, table: Table, groups: dict[str, GroupResult]) -> list[Verdict]:
    rows = {row["group"]: row for row in table.rows}
    found = []
    for claim in comparison.claims:
        if claim.left not in rows or claim.right not in rows:
            continue
        left, right = rows[claim.left], rows[claim.right]
        key = f"{claim.split}_error_pct"
        spread = False
        if left[key] and right[key] and int(left["seeds"]) > 1 and int(right["seeds"]) > 1:
            gap = abs(float(left[key]) - float(right[key]))
            widest = max(float(left[f"{claim.split}_error_std"]), float(right[f"{claim.split}_error_std"]))
            spread = 0 < widest and gap <= widest
        text = f"{groups[claim.left].label} {claim.split} error {claim.relation} {groups[claim.right].label}"
        steps = [int(run.results["steps"]) for name in (claim.left, claim.right) for run in groups[name].runs
                 if run.results.get("steps") is not None]
        found.append(Verdict(text, left[key], right[key], claim.relation, spread, min(steps) if steps else None))
    return found


def curves_table(groups: dict[str, GroupResult]) -> Table:
    table = Table(["group", "label", "step", "train_error_pct", "test_error_pct", "seeds"])
    for group in groups.values():
        for step, train, test in zip(group.steps, group.train_curve, group.test_curve):
            table.add(group=group.group, label=group.label, step=step, train_error_pct=fixed(train, 3, 100),
                      test_error_pct=fixed(test, 3, 100), seeds=len(group.runs))
    return table


def figure_title(comparison: Comparison, base: TrainConfig, arguments: dict[str, Any]) -> str:
    seeds = arguments.get("seeds", [base.seed])
    return (f"{comparison.short_title}: {data_text(base.data)}, recipe {arguments.get('recipe', '?')} "
            f"({length_text(base.to_dict())}, batch {base.batch_size}), seed{'s' if len(seeds) > 1 else ''} "
            f"{', '.join(map(str, seeds))}")


def run_comparison(comparison: Comparison, exp_dir: str | Path, base: TrainConfig, arguments: dict[str, Any], *,
                   log: Log = print, show_progress: bool | None = None, concurrent: int | str = 1) -> dict[str, Any]:
    """Train what is missing, then (re)write every result file of the experiment. Returns the paths and rows."""
    exp_dir, started = Path(exp_dir), time.time()
    config = {**base.to_dict(), "model": "per run", "seed": "per run"}
    check_rerun(exp_dir, comparison.kind, config, arguments)
    preflight(base.device, base.data)
    for spec in comparison.specs:
        spec.config(base)  # each run's config is valid before anything is written
    exp_dir.mkdir(parents=True, exist_ok=True)
    common = {"title": comparison.title, "arguments": arguments, "started": started, "config": config}
    write_experiment(exp_dir, comparison.kind, status="running", **common)
    try:
        outcomes = run_sweep(exp_dir, base, comparison.specs, log=log, show_progress=show_progress,
                             concurrent=concurrent)
    except BaseException:
        write_experiment(exp_dir, comparison.kind, status="interrupted", **common)
        raise
    groups = group_results(outcomes)
    record = write_experiment(exp_dir, comparison.kind, runs=run_records(outcomes), **common)

    table = result_table(comparison, groups)
    table.write_csv(exp_dir / "results.csv")
    runs_table(groups).write_csv(exp_dir / "runs.csv")
    curves_table(groups).write_csv(exp_dir / f"{comparison.kind}.csv")
    found = verdicts(comparison, table, groups)
    verdict_table = Table(["claim", "holds", "left_pct", "right_pct", "within_seed_spread"])
    for verdict in found:
        verdict_table.add(claim=verdict.claim, holds=verdict.answer, left_pct=verdict.left, right_pct=verdict.right,
                          within_seed_spread=str(verdict.within_spread).lower())
    verdict_table.write_csv(exp_dir / "verdicts.csv")

    panels = []
    for panel_title, members in comparison.panels:
        curves = [Curve(groups[g].label, comparison.colours.get(g, i), groups[g].steps,
                        [None if v is None else 100 * v for v in groups[g].train_curve],
                        [None if v is None else 100 * v for v in groups[g].test_curve])
                  for i, g in enumerate(members) if g in groups]
        panels.append((panel_title, curves))
    figure = plot_error_panels(panels, exp_dir / f"{comparison.kind}.png", figure_title(comparison, base, arguments))

    kind = comparison.kind
    publish_results(exp_dir, record, {
        "title": comparison.title, "setup": setup_rows(record, comparison.setup_rows), "table": table.shown(),
        "text": [MEASUREMENT_NOTE], "figure": [f"{comparison.short_title}: error against iterations", figure.name],
        "files": [["results.csv", "this table"], ["runs.csv", "every run"], [f"{kind}.csv", "the plotted curves"],
                  ["verdicts.csv", ""]],
        "verdicts": [verdict.line() for verdict in found], "notes": comparison.notes})
    log(f"wrote {exp_dir / 'results.md'}, results.csv, {figure.name}")
    return {"results": table.rows, "verdicts": [v.line() for v in found], "figure": figure,
            "markdown": exp_dir / "results.md"}
