"""The experiments' figures, in the paper's layouts: error curves against iterations with dashed training and
solid test error (DRL Figures 4 and 6), and per-layer lines (DRL Figure 7; gradient norms). Each figure has a
title naming its data and recipe, labelled axes with units and a legend; its numbers are in a CSV beside it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported: files only, no display needed
import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

DPI = 110
LONG_RUN_STEPS = 20_000  # at least this many iterations: the paper's y range (0-20 %), if the curves fit in it
FEW_POINTS = 15  # curves with fewer points get markers (a one-epoch run has a single point)
MARKED_POINTS = 120  # per-layer lines up to this many layers show a dot per layer


@dataclass
class Curve:
    """One model's error curves, in percent, against iterations."""

    label: str
    colour: int  # index into the colour cycle: the same index means the same depth across panels
    steps: Sequence[float]
    train: Sequence[float | None]
    test: Sequence[float | None]


@dataclass
class Series:
    """One line of a per-layer plot."""

    label: str
    colour: int
    x: Sequence[float]
    y: Sequence[float]
    linestyle: str = "-"


def colour(index: int) -> str:
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return cycle[index % len(cycle)]


def _values(values: Sequence[float | None]) -> list[float]:
    return [float("nan") if v is None else v for v in values]


def plot_error_panels(panels: Sequence[tuple[str, Sequence[Curve]]], output: Path, title: str) -> Path:
    """Side-by-side panels of error curves (one panel per family), sharing the y axis so they compare."""
    width = max(6.0, 5.6 * len(panels))
    figure, axes_list = plt.subplots(1, len(panels), figsize=(width, 4.8), sharey=True, squeeze=False,
                                     constrained_layout=True)
    longest = 0.0
    for axes, (panel_title, curves) in zip(axes_list[0], panels):
        handles = []
        few = any(len(curve.steps) < FEW_POINTS for curve in curves)
        for curve in curves:
            style = {"color": colour(curve.colour), "marker": "o" if few else None, "markersize": 5}
            axes.plot(curve.steps, _values(curve.train), linestyle="--", linewidth=1.1, markerfacecolor="white",
                      **style)
            axes.plot(curve.steps, _values(curve.test), linestyle="-", linewidth=1.9, **style)
            handles.append(Line2D([], [], color=colour(curve.colour), linewidth=1.9, label=curve.label))
            longest = max([longest, *curve.steps])
        marker = {"marker": "o", "markersize": 5} if few else {}
        handles += [Line2D([], [], color="0.3", linestyle="--", linewidth=1.1, label="training error",
                           markerfacecolor="white", **marker),
                    Line2D([], [], color="0.3", linestyle="-", linewidth=1.9, label="test error", **marker)]
        axes.set(title=panel_title, xlabel="iterations (training steps)")
        axes.grid(alpha=0.3)
        axes.legend(handles=handles, fontsize=9, loc="best")
    axes_list[0][0].set_ylabel("error (%)")
    values = [v for _, curves in panels for curve in curves for v in (*curve.train, *curve.test)
              if v is not None and v == v]
    if values:
        axes_list[0][0].set_ylim(*error_limits(min(values), max(values), longest))
    for axes in axes_list[0]:
        axes.set_xlim(left=0)
    figure.suptitle(title, fontsize=11)
    return _save(figure, output)


def error_limits(low: float, high: float, longest: float) -> tuple[float, float]:
    """The y range of error curves, fit to the data: the paper's 0-20 % for long runs whose curves fit in it,
    else the data's range with a margin, within 0-100 %."""
    if longest >= LONG_RUN_STEPS and high <= 20:
        return 0.0, 20.0
    margin = max(1.0, 0.06 * (high - low))
    return low - margin, min(100.0, high) + margin  # whole markers at 0 and 100 %


def plot_layer_panels(panels: Sequence[tuple[str, str, Sequence[Series]]], output: Path, title: str, *,
                      ylabel: str, log_y: bool = False) -> Path:
    """Side-by-side panels of per-layer lines: (panel title, x label, series)."""
    figure, axes_list = plt.subplots(1, len(panels), figsize=(max(6.0, 6.0 * len(panels)), 4.8), squeeze=False,
                                     sharey=True, constrained_layout=True)
    for axes, (panel_title, xlabel, series) in zip(axes_list[0], panels):
        longest = max((len(line.x) for line in series), default=0)
        marker = {"marker": "o", "markersize": 4 if longest < FEW_POINTS else 2.5} if longest <= MARKED_POINTS else {}
        for line in series:
            axes.plot(line.x, line.y, color=colour(line.colour), linestyle=line.linestyle, linewidth=1.5,
                      label=line.label, **marker)
        axes.set(title=panel_title, xlabel=xlabel)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        if log_y:
            axes.set_yscale("log")
        axes.grid(alpha=0.3, which="both" if log_y else "major")
        axes.legend(fontsize=9)
    axes_list[0][0].set_ylabel(ylabel)
    figure.suptitle(title, fontsize=11)
    return _save(figure, output)


def _save(figure: plt.Figure, output: Path) -> Path:
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(f".{output.stem}.tmp.png")
    figure.savefig(temporary, dpi=DPI)
    plt.close(figure)
    temporary.replace(output)
    return output
