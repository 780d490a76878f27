"""The experiments' figures, in the paper's layouts: error curves against iterations with dashed training and
solid test error (DRL Figures 4 and 6; drawn by ``resnetlab.plots``), and per-layer lines (DRL Figure 7; gradient norms). Each figure has a
title naming its data and recipe, labelled axes with units and a legend; its numbers are in a CSV beside it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from resnetlab.plots import FEW_POINTS, Curve, colour, plot_error_panels, save_figure

__all__ = ["Curve", "Series", "plot_error_panels", "plot_layer_panels"]

MARKED_POINTS = 120  # per-layer lines up to this many layers show a dot per layer


@dataclass
class Series:
    """One line of a per-layer plot."""

    label: str
    colour: int
    x: Sequence[float]
    y: Sequence[float]
    linestyle: str = "-"


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
    return save_figure(figure, output)
