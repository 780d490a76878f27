"""Gradient flow: the L2 norm of the loss gradient of every weight layer, input to output, at initialisation and
after a few SGD steps, for plain nets and ResNets.

DRL section 4.1 argues that the plain nets' optimisation difficulty is unlikely to come from vanishing gradients:
they are trained with BN, which keeps forward signals at non-zero variance, and the authors checked that the
backward gradients have healthy norms. This probe measures it rather than assuming either way.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import cycle, islice
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnetlab.errors import UserError
from resnetlab.experiments.records import check_rerun, data_text, display_name, preflight, write_experiment
from resnetlab.models import create_model, model_info
from resnetlab.files import write_json
from resnetlab.train.config import TrainConfig, resolve_config
from resnetlab.train.loop import Log
from resnetlab.train.announce import small_image_warning
from resnetlab.train.optim import build_optimizer, set_lr
from resnetlab.train.schedule import PlateauState, WarmupState, effective_lr, warmup_applies
from resnetlab.train.step import build_train_step

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Convolutions and linear layers, module order, without shortcut projections (not counted in the depth)."""
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, (nn.Conv2d, nn.Linear)) and "downsample" not in name.split(".")]


def forward_order(model: nn.Module, layers: list[tuple[str, nn.Module]], inputs: torch.Tensor) -> list[str]:
    """Names of ``layers`` in the order a forward pass first calls them (no gradients kept)."""
    order: list[str] = []
    handles = [module.register_forward_hook(lambda m, i, o, name=name: order.append(name) if name not in order
                                            else None) for name, module in layers]
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return order


def gradient_norms(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                   loss_fn: LossFn = F.cross_entropy) -> dict[str, float]:
    """Per weight layer (forward order), the L2 norm of d loss / d weight, averaged over the batches.

    Each batch's gradient is taken alone (gradients are zeroed in between) and its norm computed; the result is
    the mean of those norms. The model stays in its mode (train mode: BN uses batch statistics, as in training)
    and is left as found: its BN running statistics are restored and its gradients cleared.
    """
    layers = weight_layers(model)
    saved = {name: buffer.clone() for name, buffer in model.named_buffers()}
    totals: dict[str, float] = {name: 0.0 for name, _ in layers}
    count, order = 0, None
    try:
        for inputs, targets in batches:
            if order is None:
                order = forward_order(model, layers, inputs)
            model.zero_grad(set_to_none=True)
            loss_fn(model(inputs), targets).backward()
            for name, module in layers:
                if module.weight.grad is not None:
                    totals[name] += float(module.weight.grad.detach().norm())
            count += 1
    finally:
        model.zero_grad(set_to_none=True)
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(saved[name])
    if count == 0:
        raise UserError("gradient_norms needs at least one batch")
    return {name: totals[name] / count for name in order}


def weight_norms(model: nn.Module) -> dict[str, float]:
    """L2 norm of each weight layer's weight (module order). Behind a BN the loss does not depend on a conv's
    weight scale, so its gradient shrinks as 1 / ||W||: ||g|| / ||W|| is the scale-free companion of ||g||."""
    return {name: float(module.weight.detach().norm()) for name, module in weight_layers(model)}


def train_steps(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], steps: int,
                config: TrainConfig, *, depth: int, steps_per_epoch: int, device: torch.device) -> list[float]:
    """``steps`` steps of ``config``'s training, with the loop's own parts: its optimizer (``build_optimizer``),
    its step (``build_train_step``, fp32) and its learning rate (``effective_lr``, the recipe's schedule and the
    deep-net warm-up at the recipe's check cadence). Returns the losses."""
    optimizer = build_optimizer(model, config, device)
    step_fn = build_train_step(model, optimizer, config, device, amp=False)
    warmup, plateau = WarmupState(active=warmup_applies(config, depth)), PlateauState()
    model.train()
    losses = []
    for step, (inputs, targets) in enumerate(islice(cycle(batches) if isinstance(batches, list) else batches, steps)):
        set_lr(optimizer, effective_lr(config, step, steps_per_epoch, warmup, plateau))
        loss, correct = step_fn(inputs, targets)
        warmup.after_step(step + 1, correct, targets.shape[0], config)
        losses.append(float(loss))
    return losses


def probe_model(name: str, probe: list, train: Iterable, num_classes: int, *, steps: int, seed: int,
                config: TrainConfig, steps_per_epoch: int, device: torch.device) -> dict[str, Any]:
    """Norms of one model at initialisation and, when ``steps`` > 0, after that many steps of ``config``."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    model = create_model(name, num_classes=num_classes).to(device).train()
    result: dict[str, Any] = {"model": name, "seed": seed, "steps": steps, "init": gradient_norms(model, probe),
                              "init_weights": weight_norms(model)}
    if steps:
        losses = train_steps(model, train, steps, config, depth=model_info(name).depth,
                             steps_per_epoch=steps_per_epoch, device=device)
        result.update(trained=gradient_norms(model, probe), trained_weights=weight_norms(model), losses=losses)
    result["seconds"] = time.perf_counter() - started
    return result


def load_batches(data: str | None, batch_size: int, batches: int, seed: int, device: torch.device,
                 ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]],
                            Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]], list[str], int]:
    """(probe batches, training batch iterator, classes, batches per epoch): pixel-mean normalisation as the paper; the probe
    batches are fixed and unaugmented, the training batches crop+flip augmented, both drawn from ``seed``."""
    from resnetlab.data import DeviceLoader, fit_normalizer, load_dataset

    dataset = load_dataset(data)
    normalizer = fit_normalizer("pixel_mean", dataset.train.images)
    common = {"device": device, "normalizer": normalizer, "seed": seed}
    probe_loader = DeviceLoader(dataset.train, batch_size, shuffle=True, **common)
    probe = list(islice(cycle(probe_loader.epoch(0)) if batches > len(probe_loader) else probe_loader.epoch(0),
                        batches))
    train_loader = DeviceLoader(dataset.train, batch_size, augmentation="crop_flip", shuffle=True, **common)

    def training_batches():
        epoch = 0
        while True:
            yield from train_loader.epoch(epoch)
            epoch += 1

    return probe, training_batches, dataset.classes, len(train_loader)


def run_gradients(models: list[str], exp_dir: str | Path, *, data: str | None = None, steps: int = 100,
                  batches: int = 8, batch_size: int = 128, seed: int = 0, lr: float = 0.1, device: str = "cpu",
                  arguments: dict[str, Any] | None = None, log: Log = print) -> dict[str, Any]:
    """Probe every model (a model already probed with these settings is kept) and write the table and plot."""
    from resnetlab.experiments.gradient_report import write_gradient_report
    from resnetlab.train.environment import describe_environment

    exp_dir, started = Path(exp_dir), time.time()
    for name in models:
        model_info(name)
    if steps < 0 or batches < 1:
        raise UserError("--steps must be >= 0 and --batches >= 1")
    arguments = {**(arguments or {}), "models": models, "data": data, "steps": steps, "batches": batches,
                 "batch_size": batch_size, "seed": seed, "lr": lr}
    check_rerun(exp_dir, "gradients", None, arguments)
    config = resolve_config("paper", overrides={"lr": lr, "batch_size": batch_size, "seed": seed})
    torch_device = preflight(device, data)
    common = {"title": "Gradient flow: per-layer gradient norms (DRL section 4.1)", "arguments": arguments,
                  "started": started, "environment": {**describe_environment(torch_device), "seed": seed}}
    write_experiment(exp_dir, "gradients", status="running", **common)
    settings = {key: arguments[key] for key in ("data", "steps", "batches", "batch_size", "seed", "lr")}
    settings["format"] = 3  # format 1: no weight norms; 2: hand-coded SGD and warm-up. Both are measured again
    results, loaded = [], None
    for name in models:
        path = exp_dir / "models" / f"{name}.json"
        if path.exists():
            stored = json.loads(path.read_text())
            if stored.get("settings") == settings:
                log(f"{name}: probed earlier, kept")
                results.append(stored)
                continue
        if loaded is None:
            loaded = load_batches(data, batch_size, batches, seed, torch_device)
        probe, training_batches, classes, steps_per_epoch = loaded
        warning = small_image_warning(name, probe[0][0].shape[-1])
        if warning:
            log(warning)
        log(f"{name}: gradient norms at initialisation" + (f" and after {steps} steps" if steps else ""))
        result = probe_model(name, probe, training_batches(), len(classes), steps=steps, seed=seed, config=config,
                             steps_per_epoch=steps_per_epoch, device=torch_device)
        result["settings"] = settings
        write_json(path, result)
        results.append(result)
    title = (f"Gradient norms per layer: {data_text(data)}, batch {batch_size}, mean of {batches} batches, "
             f"the paper recipe's SGD at lr {lr:g}, seed {seed}")
    record = write_experiment(exp_dir, "gradients", **common,
                              extra={"models_probed": [display_name(r["model"]) for r in results],
                                     "measured_seconds": sum(r.get("seconds", 0.0) for r in results)})
    return write_gradient_report(exp_dir, results, record, title, log)
