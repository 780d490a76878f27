"""Learning curves from run directories' history files (never from the training loop itself).

The layout follows DRL Figure 6 and the tutorial's history plots: error in percent against epochs or
iterations, dashed lines for training, solid for test (or validation), one colour per run; a second panel shows
the losses. A CSV with the plotted numbers is written beside the picture.
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.ticker import MaxNLocator  # noqa: E402

from resnetlab.errors import UserError  # noqa: E402
from resnetlab.train.history import read_history  # noqa: E402

FEW_POINTS = 15  # runs with fewer history rows are drawn with markers


def run_label(run_dir: Path) -> str:
    return Path(run_dir).resolve().name


def plot_runs(run_dirs: list[str | Path], output: str | Path, x_axis: str = "epoch", eval_split: str = "test",
              title: str = "") -> Path:
    """Draw error and loss curves of several runs into one PNG (plus ``<output>.csv``); returns the PNG path."""
    if x_axis not in ("epoch", "step"):
        raise UserError(f"x axis must be epoch or step, got {x_axis!r}")
    runs = []
    for run_dir in run_dirs:
        rows = read_history(Path(run_dir))
        if not rows:
            raise UserError(f"{run_dir}: no history.csv or history.jsonl (is it a run directory?)")
        runs.append((run_label(Path(run_dir)), rows))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)

    figure, (error_axes, loss_axes) = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    table: list[dict] = []
    drawn: dict[str, list[float]] = {"error": [], "loss": []}
    splits: list[str] = []
    for index, (label, rows) in enumerate(runs):
        colour = colours[index % len(colours)]
        xs = [row[x_axis] for row in rows]
        split = eval_split if rows[0].get(f"{eval_split}_acc") is not None else "val"
        # A run of a few points (one epoch is one point) is drawn with markers, or it would not show at all.
        marker = {"marker": "o", "markersize": 4} if len(rows) < FEW_POINTS else {}
        for metric, axes, scale in (("error", error_axes, 100.0), ("loss", loss_axes, 1.0)):
            train = [_nan(_scaled(row.get(f"train_{metric}"), scale)) for row in rows]
            held_out = [_nan(_scaled(row.get(f"{split}_{metric}"), scale)) for row in rows]
            axes.plot(xs, train, linestyle="--", color=colour, linewidth=1.2, label=f"{label} training",
                      markerfacecolor="white", **marker)
            drawn[metric] += [value for value in train if value == value]
            if any(value == value for value in held_out):
                axes.plot(xs, held_out, linestyle="-", color=colour, linewidth=1.8, label=f"{label} {split}",
                          **marker)
                drawn[metric] += [value for value in held_out if value == value]
                splits += [split] if split not in splits else []
        for row in rows:
            table.append({"run": label, x_axis: row[x_axis], "train_error_pct": _scaled(row.get("train_error"), 100),
                          f"{split}_error_pct": _scaled(row.get(f"{split}_error"), 100),
                          "train_loss": row.get("train_loss"), f"{split}_loss": row.get(f"{split}_loss")})
    x_label = "epoch" if x_axis == "epoch" else "iteration"
    held = " / ".join(splits) or "none"
    error_axes.set(xlabel=x_label, ylabel="error (%)", title=f"Error (dashed: training, solid: {held})")
    loss_axes.set(xlabel=x_label, ylabel="cross-entropy loss", title=f"Loss (dashed: training, solid: {held})")
    for metric, axes in (("error", error_axes), ("loss", loss_axes)):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        if drawn[metric]:
            axes.set_ylim(*fit(drawn[metric], upper=100.0 if metric == "error" else None))
    figure.suptitle(title or f"Learning curves: {', '.join(label for label, _ in runs)}")
    figure.savefig(output, dpi=110)
    plt.close(figure)
    _write_csv(output.with_suffix(".csv"), table)
    return output


def fit(values: list[float], upper: float | None = None) -> tuple[float, float]:
    """A y range around the drawn values with a small margin (so that markers at 0 or at ``upper`` show whole)."""
    low, high = min(values), max(values)
    margin = max(0.05 * (high - low), 0.02 * max(abs(high), 1e-3), 1e-3)
    top = high + margin if upper is None else min(upper + margin, high + margin)
    return low - margin, top


def _scaled(value: float | None, scale: float) -> float | None:
    return None if value is None else value * scale


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


def _write_csv(path: Path, rows: list[dict]) -> None:
    fields: list[str] = []
    for row in rows:
        fields += [key for key in row if key not in fields]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
