"""Error curves in the layout of DRL Figure 6: error in percent against iterations (or epochs), dashed for training,
solid for test (or validation), one colour per model or run. The one drawing of that layout, used by ``resnetlab
plot`` (learning curves from run directories' history files, never from the training loop itself) and by the
experiments' figures. A CSV with the plotted numbers is written beside each picture.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported: files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.backend_bases import FigureCanvasBase  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from resnetlab.errors import UserError  # noqa: E402
from resnetlab.files import atomic_path, atomic_write_text, check_output_file  # noqa: E402
from resnetlab.train.history import read_history  # noqa: E402

DPI = 110
ITERATIONS = "iterations (training steps)"
LONG_RUN_STEPS = 20_000  # at least this many iterations: the paper's y range (0-20 %), if the curves fit in it
FEW_POINTS = 15  # curves with fewer points get markers (a one-epoch run has a single point)


@dataclass
class Curve:
    """One model's (or run's) training and held-out curves against the x axis; None where a value is missing."""

    label: str
    colour: int  # index into the colour cycle: the same index means the same depth across panels
    steps: Sequence[float]
    train: Sequence[float | None]
    test: Sequence[float | None]


def colour(index: int) -> str:
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return cycle[index % len(cycle)]


def _values(values: Sequence[float | None]) -> list[float]:
    return [float("nan") if v is None else v for v in values]


def draw_curves(axes: Axes, curves: Sequence[Curve], *, title: str, xlabel: str = ITERATIONS,
                train_label: str = "training error", test_label: str = "test error") -> None:
    """One panel: each curve's training values dashed and held-out values solid in its colour; a legend of the
    colours (curves) and of the two line styles."""
    handles = []
    few = any(len(curve.steps) < FEW_POINTS for curve in curves)
    for curve in curves:
        style = {"color": colour(curve.colour), "marker": "o" if few else None, "markersize": 5}
        axes.plot(curve.steps, _values(curve.train), linestyle="--", linewidth=1.1, markerfacecolor="white", **style)
        if any(v is not None for v in curve.test):
            axes.plot(curve.steps, _values(curve.test), linestyle="-", linewidth=1.9, **style)
        handles.append(Line2D([], [], color=colour(curve.colour), linewidth=1.9, label=curve.label))
    marker = {"marker": "o", "markersize": 5} if few else {}
    handles += [Line2D([], [], color="0.3", linestyle="--", linewidth=1.1, label=train_label,
                       markerfacecolor="white", **marker),
                Line2D([], [], color="0.3", linestyle="-", linewidth=1.9, label=test_label, **marker)]
    axes.set(title=title, xlabel=xlabel)
    axes.grid(alpha=0.3)
    axes.legend(handles=handles, fontsize=9, loc="best")
    axes.set_xlim(left=0)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs and iterations are whole numbers


def error_limits(low: float, high: float, longest: float) -> tuple[float, float]:
    """The y range of error curves, fit to the data: the paper's 0-20 % for long runs whose curves fit in it,
    else the data's range with a margin (so that markers at 0 and 100 % show whole)."""
    if longest >= LONG_RUN_STEPS and high <= 20:
        return 0.0, 20.0
    margin = max(1.0, 0.06 * (high - low))
    return low - margin, min(100.0, high) + margin


def plot_error_panels(panels: Sequence[tuple[str, Sequence[Curve]]], output: Path, title: str) -> Path:
    """Side-by-side panels of error curves in percent against iterations (one panel per family, DRL Figure 6),
    sharing the y axis so they compare."""
    width = max(6.0, 5.6 * len(panels))
    figure, axes_list = plt.subplots(1, len(panels), figsize=(width, 4.8), sharey=True, squeeze=False,
                                     constrained_layout=True)
    values = [v for _, curves in panels for c in curves for v in (*c.train, *c.test) if v is not None]
    longest = max((s for _, curves in panels for c in curves for s in c.steps), default=0)
    for axes, (panel_title, curves) in zip(axes_list[0], panels):
        draw_curves(axes, curves, title=panel_title)
    axes_list[0][0].set_ylabel("error (%)")
    if values:
        axes_list[0][0].set_ylim(*error_limits(min(values), max(values), longest))
    figure.suptitle(title, fontsize=11)
    return save_figure(figure, output)


def figure_path(output: str | Path) -> Path:
    """Where a figure goes: ``output``, with ``.png`` added when it has no suffix (as matplotlib does); refused in
    one line when matplotlib cannot write its suffix or the path cannot be written."""
    path = check_output_file(output, example="curves.png")
    if not path.suffix:
        path = path.with_name(f"{path.name}.png")
    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix[1:].lower() not in formats:
        raise UserError(f"{path}: cannot draw a {path.suffix} file; give a name ending in one of "
                        f"{', '.join('.' + name for name in sorted(formats))}")
    return check_output_file(path)


def save_figure(figure: plt.Figure, output: str | Path) -> Path:
    """Write the figure (format from the suffix, ``.png`` when it has none) atomically and free it; returns the
    path written."""
    try:
        path = figure_path(output)
        with atomic_path(path) as temporary:
            figure.savefig(temporary, dpi=DPI, format=path.suffix[1:].lower())
    finally:
        plt.close(figure)
    return path


def run_label(run_dir: Path) -> str:
    return Path(run_dir).resolve().name


def plot_runs(run_dirs: list[str | Path], output: str | Path, x_axis: str = "epoch", eval_split: str = "test",
              title: str = "") -> Path:
    """Draw error and loss curves of several runs into one PNG (plus ``<output>.csv``); returns the PNG path."""
    if x_axis not in ("epoch", "step"):
        raise UserError(f"x axis must be epoch or step, got {x_axis!r}")
    output = figure_path(output)  # before the reading and drawing
    runs = []
    for run_dir in run_dirs:
        rows = read_history(Path(run_dir))
        if not rows:
            raise UserError(f"{run_dir}: no history.csv or history.jsonl (is it a run directory?)")
        runs.append((run_label(Path(run_dir)), rows))
    split = eval_split if all(rows[0].get(f"{eval_split}_acc") is not None for _, rows in runs) else "val"
    curves: dict[str, list[Curve]] = {"error": [], "loss": []}
    table: list[dict] = []
    for index, (label, rows) in enumerate(runs):
        xs = [row[x_axis] for row in rows]
        for metric, scale in (("error", 100.0), ("loss", 1.0)):
            curves[metric].append(Curve(label, index, xs, [_scaled(row.get(f"train_{metric}"), scale) for row in rows],
                                        [_scaled(row.get(f"{split}_{metric}"), scale) for row in rows]))
        for row in rows:
            table.append({"run": label, x_axis: row[x_axis], "train_error_pct": _scaled(row.get("train_error"), 100),
                          f"{split}_error_pct": _scaled(row.get(f"{split}_error"), 100),
                          "train_loss": row.get("train_loss"), f"{split}_loss": row.get(f"{split}_loss")})
    figure, (error_axes, loss_axes) = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    x_label = "epoch" if x_axis == "epoch" else "iteration"
    # The titles use the legends' words: "training" and the held-out split's name.
    draw_curves(error_axes, curves["error"], title=f"Error (dashed: training, solid: {split})", xlabel=x_label,
                test_label=f"{split} error")
    draw_curves(loss_axes, curves["loss"], title=f"Loss (dashed: training, solid: {split})", xlabel=x_label,
                train_label="training loss", test_label=f"{split} loss")
    error_axes.set_ylabel("error (%)")
    loss_axes.set_ylabel("cross-entropy loss")
    figure.suptitle(title or f"Learning curves: {', '.join(label for label, _ in runs)}")
    output = save_figure(figure, output)
    _write_csv(output.with_suffix(".csv"), table)
    return output


def _scaled(value: float | None, scale: float) -> float | None:
    return None if value is None else value * scale


def _write_csv(path: Path, rows: list[dict]) -> None:
    fields: list[str] = []
    for row in rows:
        fields += [key for key in row if key not in fields]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())
