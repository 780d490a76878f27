"""The layer-response experiment's files (DRL Figure 7): per-layer stds (CSV), the per-model summary (CSV +
Markdown from the same strings), the two-panel plot and the verdicts on the paper's two observations."""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from resnetlab.experiments.comparison import too_short_to_judge
from resnetlab.experiments.figures import Series, plot_layer_panels
from resnetlab.experiments.records import data_text, display_name, setup_rows
from resnetlab.experiments.render import publish_results
from resnetlab.experiments.tables import Table, fixed
from resnetlab.models import model_info
from resnetlab.train.loop import Log

SUMMARY_COLUMNS = ["run", "model", "label", "layers", "mean_std", "median_std", "max_std", "mean_channel_std"]


def labels(results: list[dict[str, Any]]) -> list[str]:
    """Model names, with the run's name where two runs share a model."""
    counts = Counter(r["model"] for r in results)
    return [display_name(r["model"]) + (f" ({r['run']})" if counts[r["model"]] > 1 else "") for r in results]


def summary_table(results: list[dict[str, Any]]) -> Table:
    table = Table(SUMMARY_COLUMNS, view=[
        ("model", lambda r: r["label"]), ("3x3 layers", lambda r: r["layers"]),
        ("mean std", lambda r: r["mean_std"]), ("median std", lambda r: r["median_std"]),
        ("max std", lambda r: r["max_std"]), ("mean channel std", lambda r: r["mean_channel_std"])])
    for result, label in zip(results, labels(results)):
        stds = [layer["std"] for layer in result["layers"]]
        table.add(run=result["run"], model=result["model"], label=label, layers=len(stds),
                  mean_std=fixed(statistics.fmean(stds), 4), median_std=fixed(statistics.median(stds), 4),
                  max_std=fixed(max(stds), 4),
                  mean_channel_std=fixed(statistics.fmean(layer["channel_std"] for layer in result["layers"]), 4))
    return table


def verdict_lines(table: Table, steps: dict[str, int]) -> list[str]:
    """DRL's two observations, on the mean std over layers: ResNet < plain twin; deeper ResNet < shallower one.

    They are about nets trained with the paper's schedule, so nets trained too few iterations (``steps``, per
    run) get the degradation comparison's "too short to judge" (``comparison.too_short_to_judge``)."""
    first = {}
    for row in table.rows:
        first.setdefault(row["model"], row)

    def line(a: dict[str, str], b: dict[str, str]) -> str:
        holds = float(a["mean_std"]) < float(b["mean_std"])
        answer = too_short_to_judge(min(steps[a["run"]], steps[b["run"]])) or ("yes" if holds else "no")
        return (f"{a['label']} responses smaller than {b['label']}'s (mean std over layers): {answer}, "
                f"{a['mean_std']} vs {b['mean_std']}")

    lines = []
    for model, row in first.items():
        info = model_info(model)
        twin = first.get(info.twin) if info.residual and info.twin else None
        if twin is not None:
            lines.append(line(row, twin))
    resnets = sorted((m for m in first if model_info(m).family == "cifar_v1"), key=lambda m: model_info(m).depth)
    if len(resnets) > 1:
        lines.append(line(first[resnets[-1]], first[resnets[0]]))
    return lines or ["no plain/ResNet pair of the same depth and no two ResNet depths: nothing to compare"]


def write_response_report(exp_dir: Path, results: list[dict[str, Any]], record: dict[str, Any],
                          log: Log) -> dict[str, Any]:
    per_layer = Table(["run", "model", "layer_index", "layer", "std", "channel_std", "rank_by_std"])
    depths = sorted({model_info(r["model"]).depth for r in results})
    in_order, by_size = [], []
    for result, label in zip(results, labels(results)):
        stds = [layer["std"] for layer in result["layers"]]
        ranks = {index: rank for rank, index in enumerate(sorted(range(len(stds)), key=lambda i: -stds[i]), 1)}
        for index, layer in enumerate(result["layers"]):
            per_layer.add(run=result["run"], model=result["model"], layer_index=layer["layer_index"],
                          layer=layer["layer"], std=fixed(layer["std"], 5), channel_std=fixed(layer["channel_std"], 5),
                          rank_by_std=ranks[index])
        info = model_info(result["model"])
        style = {"colour": depths.index(info.depth), "linestyle": "-" if info.residual else "--"}
        in_order.append(Series(label, x=list(range(1, len(stds) + 1)), y=stds, **style))
        by_size.append(Series(label, x=list(range(1, len(stds) + 1)), y=sorted(stds, reverse=True), **style))
    per_layer.write_csv(exp_dir / "responses.csv")
    table = summary_table(results)
    table.write_csv(exp_dir / "results.csv")
    sources = sorted({data_text(r["data"]) for r in results})
    images = sorted({r["images"] for r in results})
    title = (f"Std of 3x3 layer responses of trained nets: {', '.join(sources)} test set, first "
             f"{', '.join(map(str, images))} images")
    figure = plot_layer_panels([("in layer order", "layer index (3x3 layers, input to output)", in_order),
                                ("sorted by magnitude", "rank (largest std first)", by_size)],
                               exp_dir / "responses.png", title, ylabel="std of the layer's response")
    found = verdict_lines(table, {r["run"]: r["step"] for r in results})
    setup = [("runs", ", ".join(f"{r['run']} (step {r['step']})" for r in results)),
             ("images", f"the first {', '.join(map(str, images))} test images, eval mode (BN running statistics)")]
    publish_results(exp_dir, record, {
        "title": record["title"], "setup": setup_rows(record, setup), "table": table.shown(),
        "text": [("A layer's response is the output of each 3x3 convolution after its BN and before the ReLU or the "
                  "addition (v1 nets; in pre-activation nets the convolution's own output). Its std is taken over "
                  "all values of that output for the images (images x channels x positions); \"channel std\" is "
                  "instead the mean over channels of each channel's std. The weights are each run's final "
                  "checkpoint.")],
        "figure": ["layer response std", figure.name],
        "files": [["results.csv", "this table"], ["responses.csv", "every layer"]], "verdicts": found,
        "notes": [("DRL Figure 7 (CIFAR-10, 64k iterations): ResNets have generally smaller responses than their "
                   "plain counterparts, and the deeper ResNet-110 smaller ones than ResNet-20/56, supporting the view "
                   "that residual functions are generally closer to zero than non-residual ones.")]})
    log(f"wrote {exp_dir / 'results.md'}, results.csv, responses.csv, {figure.name}")
    return {"results": table.rows, "verdicts": found, "figure": figure, "markdown": exp_dir / "results.md"}
