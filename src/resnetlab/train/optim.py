"""Optimizers and the two kinds of weight penalty the recipes use.

The paper's SGD weight decay (1e-4) is added to the gradient by the optimizer. Keras' ``l2(1e-4)`` kernel
regularizer is a different thing: ``1e-4 * sum(w**2)`` is added to the loss, so its gradient is ``2e-4 * w``
and, under Adam, it is rescaled by the adaptive denominators like any other gradient (not AdamW).
"""

from __future__ import annotations

import torch
from torch import nn

from resnetlab.train.config import TrainConfig


def parameter_groups(model: nn.Module, config: TrainConfig) -> list[dict]:
    """One group, or two when BN parameters and biases are excluded from weight decay."""
    if not config.wd_exclude_norm_bias:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": config.weight_decay}]
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim > 1 else no_decay).append(parameter)
    return [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    groups = parameter_groups(model, config)
    # The fused kernels do the whole update in a few launches on CUDA; on CPU the foreach path is the fast one.
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    if config.deterministic:
        fast = {"foreach": False}
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov, **fast)
    optimizer_class = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return optimizer_class(groups, lr=config.lr, betas=tuple(config.adam_betas), eps=config.adam_eps, **fast)


def conv_kernels(model: nn.Module) -> list[torch.Tensor]:
    """The tensors Keras' ``kernel_regularizer`` covers in the tutorial: every convolution kernel."""
    return [module.weight for module in model.modules() if isinstance(module, nn.Conv2d)]


def l2_penalty(kernels: list[torch.Tensor], coefficient: float) -> torch.Tensor:
    return coefficient * torch.stack([kernel.float().square().sum() for kernel in kernels]).sum()


def use_tensor_lr(optimizer: torch.optim.Optimizer, device: torch.device) -> torch.Tensor:
    """Give every parameter group one shared device tensor as its learning rate, holding the current value.

    A captured step (``graphs.py``) reads the rate from device memory; ``set_lr`` then writes that tensor in
    place, which is one small kernel and no host synchronisation.
    """
    lr = torch.tensor(current_lr(optimizer), device=device, dtype=torch.float32)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    filled: set[int] = set()
    for group in optimizer.param_groups:
        current = group["lr"]
        if isinstance(current, torch.Tensor):
            if id(current) not in filled:
                current.fill_(lr)
                filled.add(id(current))
        else:
            group["lr"] = lr


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The first group's learning rate as a number (reading a device tensor waits for the device)."""
    return float(optimizer.param_groups[0]["lr"])


def portable_state_dict(optimizer: torch.optim.Optimizer) -> dict:
    """``optimizer.state_dict()`` with tensor learning rates as numbers, so a checkpoint loads on any device."""
    state = optimizer.state_dict()
    for group in state["param_groups"]:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"] = float(group["lr"])
    return state
