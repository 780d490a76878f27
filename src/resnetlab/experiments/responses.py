"""Layer responses (DRL section 4.2, Figure 7): the standard deviation of each 3x3 layer's output of trained
plain nets and ResNets, in layer order and sorted by magnitude.

DRL: "The responses are the outputs of each 3x3 layer, after BN and before other nonlinearity (ReLU/addition)."
For v1 nets that is the BN after each 3x3 convolution (``bn2`` of a block is read before the addition). The
paper's observation: ResNets have generally smaller responses than their plain twins, and deeper ResNets smaller
ones than shallower ResNets, supporting the view that residual functions are closer to zero.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnetlab.errors import UserError
from resnetlab.experiments.records import (check_rerun, preflight, read_experiment, run_environment,
                                           write_experiment)
from resnetlab.files import write_json
from resnetlab.train.loop import Log

CHUNK = 250  # images per forward pass


def response_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The module whose output is each 3x3 layer's response: the BN right after the conv in v1 blocks and stems,
    else (pre-activation nets, where BN comes before the conv) the conv itself. Shortcut projections excluded."""
    from resnetlab.models import BasicBlock, Bottleneck, ResNet

    modules = dict(model.named_modules())
    found = []
    for name, module in model.named_modules():
        if not (isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3)) or "downsample" in name.split("."):
            continue
        parent_name, _, leaf = name.rpartition(".")
        norm_name = leaf.replace("conv", "bn")
        norm = getattr(modules[parent_name], norm_name, None)
        if isinstance(modules[parent_name], (BasicBlock, Bottleneck, ResNet)) and isinstance(norm, nn.BatchNorm2d):
            found.append((f"{parent_name}.{norm_name}" if parent_name else norm_name, norm))
        else:
            found.append((name, module))
    return found


class _Moments:
    """Per-channel sums of x and x^2 (float64) over images and positions, accumulated across chunks."""

    def __init__(self) -> None:
        self.total = self.squares = None
        self.count = 0

    def __call__(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        values = output.detach().double().transpose(0, 1).flatten(1)  # (C, N*H*W)
        sums, squares = values.sum(1), values.square().sum(1)
        self.total = sums if self.total is None else self.total + sums
        self.squares = squares if self.squares is None else self.squares + squares
        self.count += values.shape[1]

    def stds(self) -> tuple[float, float]:
        """(std of all values of the layer, mean over channels of each channel's std)."""
        channel_mean = self.total / self.count
        channel_var = (self.squares / self.count - channel_mean.square()).clamp(min=0)
        overall_mean = self.total.sum() / (self.count * len(self.total))
        overall_var = (self.squares.sum() / (self.count * len(self.total)) - overall_mean.square()).clamp(min=0)
        return float(overall_var.sqrt()), float(channel_var.sqrt().mean())


@torch.no_grad()
def layer_response_stds(model: nn.Module, images: torch.Tensor) -> list[dict[str, Any]]:
    """Per 3x3 layer, in forward order: ``std`` of all N*C*H*W output values over the images, and
    ``channel_std``, the mean over channels of each channel's std. The model runs in eval mode (trained BN)."""
    layers = response_layers(model)
    moments = {name: _Moments() for name, _ in layers}
    order: list[str] = []

    def hook_for(name: str):
        def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            if name not in order:
                order.append(name)
            moments[name](module, inputs, output)
        return hook

    handles = [module.register_forward_hook(hook_for(name)) for name, module in layers]
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(images), CHUNK):
            model(images[start:start + CHUNK])
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    stats = []
    for index, name in enumerate(order, 1):
        std, channel_std = moments[name].stds()
        stats.append({"layer_index": index, "layer": name, "std": std, "channel_std": channel_std})
    return stats


def final_checkpoint(path: Path) -> Path:
    """A run directory's last step checkpoint (the weights its final errors describe); other paths (a checkpoint,
    published weights such as ``resnet20.cifar10``) as given, once they are known to be there."""
    from resnetlab.models.weights import parse_weights_name
    from resnetlab.train.checkpoint import list_checkpoints

    if path.is_dir() and (path / "checkpoints").is_dir():
        found = list_checkpoints(path, "step")
        if not found:
            raise UserError(f"{path}: no checkpoint yet (has the run started?)")
        return found[0]
    if not path.exists() and not parse_weights_name(str(path)):
        raise UserError(f"{path}: no such run directory or checkpoint")
    if path.is_dir() and not (path / "model.safetensors").exists():
        raise UserError(f"{path}: neither a run directory (no checkpoints/) nor a checkpoint directory (no "
                        "model.safetensors)")
    return path


def runs_from_experiment(exp_dir: Path, seed: int | None = None) -> list[Path]:
    """The runs of a training experiment (degradation, shortcuts, preact), one seed (the smallest by default)."""
    record = read_experiment(exp_dir)
    runs = record.get("runs") or []
    if not runs:
        raise UserError(f"{exp_dir}: the experiment has no finished runs yet")
    seeds = sorted({r["seed"] for r in runs})
    if seed is not None and seed not in seeds:
        raise UserError(f"{exp_dir} has no runs of seed {seed}; its seeds: {', '.join(map(str, seeds))}")
    chosen = seeds[0] if seed is None else seed
    return [Path(r["run_dir"]) for r in runs if r["seed"] == chosen]


def first_test_images(data: str | None, count: int, normalizer: Any, cache: dict) -> torch.Tensor:
    """The first ``count`` test images, normalised as the checkpoint was trained."""
    from resnetlab.data import load_dataset

    if data not in cache:
        cache[data] = load_dataset(data or None)
    arrays = cache[data].test
    images = torch.from_numpy(arrays.images[:count]).permute(0, 3, 1, 2).contiguous()
    return normalizer(images)


def run_responses(run_dirs: list[str | Path], exp_dir: str | Path, *, data: str | None = None, images: int = 500,
                  arguments: dict[str, Any] | None = None, log: Log = print) -> dict[str, Any]:
    """Measure every run's layer responses (runs measured earlier with the same settings are kept) and write the
    table, the plot and ``experiment.json``."""
    from resnetlab.experiments.response_report import write_response_report
    from resnetlab.train.inference import load_trained

    exp_dir, started = Path(exp_dir), time.time()
    if not run_dirs:
        raise UserError("give trained runs (--runs RUN_DIR...) or an experiment directory (--from EXP_DIR)")
    if images < 2:
        raise UserError("--images must be at least 2")
    arguments = {**(arguments or {}), "runs": [str(r) for r in run_dirs], "data": data, "images": images}
    check_rerun(exp_dir, "responses", None, arguments)
    checkpoints = [final_checkpoint(Path(run_dir)) for run_dir in run_dirs]  # each there before anything is written
    preflight("cpu", data)
    common = {"title": "Layer responses: std of each 3x3 layer's output (DRL section 4.2, Figure 7)",
              "arguments": arguments, "started": started,
              "environment": run_environment([Path(r) for r in run_dirs])}
    write_experiment(exp_dir, "responses", status="running", **common)
    results, datasets = [], {}
    for run_dir, checkpoint in zip(map(Path, run_dirs), checkpoints):
        name = run_dir.name if run_dir.is_dir() else checkpoint.stem
        path = exp_dir / "models" / f"{name}.json"
        key = {"checkpoint": str(checkpoint.resolve()), "images": images, "data": data}
        if path.exists() and json.loads(path.read_text()).get("key") == key:
            log(f"{name}: measured earlier, kept")
            results.append(json.loads(path.read_text()))
            continue
        trained = load_trained(checkpoint)
        source = data or trained.metadata.get("data") or None
        batch = first_test_images(source, images, trained.normalizer, datasets)
        log(f"{name}: responses of {trained.metadata['model']} on {len(batch)} test images")
        measuring = time.perf_counter()
        result = {"key": key, "run": name, "model": trained.metadata["model"], "step": trained.metadata["step"],
                  "data": source, "images": len(batch), "layers": layer_response_stds(trained.model, batch)}
        result["seconds"] = time.perf_counter() - measuring
        write_json(path, result)
        results.append(result)
    sources = sorted({str(r["data"]) for r in results if r.get("data")})
    record = write_experiment(exp_dir, "responses", **common,
                              extra={"data": ", ".join(sources) or None,
                                     "measured_seconds": sum(r.get("seconds", 0.0) for r in results)})
    return write_response_report(exp_dir, results, record, log)
