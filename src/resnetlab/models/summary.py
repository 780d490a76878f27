"""A model summary in the manner of Keras' ``model.summary()``: layers, output shapes, parameters, plus the
multiply-adds (MACs) and activation memory a researcher needs to compare architectures.

Multiply-adds are what DRL Table 1 calls "FLOPs" (ResNet-50: 3.8 x 10^9); one multiply-add is two FLOPs in
``torch.utils.flop_counter``'s convention, so MACs = counted FLOPs / 2.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class LayerRow:
    name: str
    kind: str
    output_shape: list[int]
    params: int


@dataclass
class ModelSummary:
    model: str
    input_shape: list[int]
    layers: list[LayerRow] = field(default_factory=list)
    trainable_params: int = 0
    non_trainable_params: int = 0
    bn_running_stats: int = 0
    macs: int = 0
    activation_bytes_per_image: int = 0

    @property
    def total_params(self) -> int:
        """Keras' "Total params": trainable + non-trainable + BN moving mean/variance."""
        return self.trainable_params + self.non_trainable_params + self.bn_running_stats

    def to_dict(self) -> dict:
        return {**asdict(self), "total_params": self.total_params}


def summarize(model: nn.Module, input_shape: tuple[int, ...] = (3, 32, 32), name: str = "") -> ModelSummary:
    """Run one image through ``model`` (eval mode, no grad) and record every leaf layer's output."""
    summary = ModelSummary(model=name or type(model).__name__, input_shape=list(input_shape))
    rows: list[LayerRow] = []
    activation_bytes = 0

    def record(module_name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            nonlocal activation_bytes
            params = sum(p.numel() for p in module.parameters(recurse=False))
            rows.append(LayerRow(module_name, type(module).__name__, list(output.shape), params))
            activation_bytes += output.numel() * output.element_size()
        return hook

    handles = [module.register_forward_hook(record(module_name)) for module_name, module in model.named_modules()
               if not list(module.children()) and module_name]
    was_training = model.training
    model.eval()
    parameter = next(model.parameters())
    x = torch.zeros((1, *input_shape), dtype=parameter.dtype, device=parameter.device)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    summary.layers = rows
    summary.macs = counter.get_total_flops() // 2
    summary.activation_bytes_per_image = activation_bytes
    summary.trainable_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    summary.non_trainable_params = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    summary.bn_running_stats = sum(buffer.numel() for buffer_name, buffer in model.named_buffers()
                                   if buffer_name.endswith(("running_mean", "running_var")))
    return summary


def display_shape(shape: list[int], channels_last: bool) -> str:
    """``(None, 16, 32, 32)`` as PyTorch orders a batch, or ``(None, 32, 32, 16)`` as Keras prints it."""
    dims = list(shape[1:])
    if channels_last and len(dims) == 3:
        dims = [*dims[1:], dims[0]]
    return "(" + ", ".join(["None", *map(str, dims)]) + ")"


def format_summary(summary: ModelSummary, channels_last: bool = False) -> str:
    """The summary as a fixed-width table with totals below, like Keras prints it; ``channels_last`` orders the
    shapes (batch, height, width, channels) as Keras' ``model.summary()`` does."""
    header = f"{'Layer (type)':<44} {'Output shape':<22} {'Param #':>10}"
    rule = "=" * len(header)
    order = "(batch, height, width, channels), as Keras prints them" if channels_last else \
        "(batch, channels, height, width), PyTorch's order; --channels-last for Keras' order"
    lines = [f'Model: "{summary.model}"  input {"x".join(map(str, summary.input_shape))}  shapes: {order}', rule,
             header, rule]
    for row in summary.layers:
        shape = display_shape(row.output_shape, channels_last)
        lines.append(f"{row.name + ' (' + row.kind + ')':<44} {shape:<22} {row.params:>10,}")
    lines += [
        rule,
        f"Total params: {summary.total_params:,} (Keras' count: includes BN moving mean/variance)",
        f"Trainable params: {summary.trainable_params:,}",
        f"Non-trainable params: {summary.non_trainable_params + summary.bn_running_stats:,}"
        f" (BN running statistics: {summary.bn_running_stats:,})",
        f"Multiply-adds (MACs, not FLOPs): {_si(summary.macs)} per image",
        f"Activation memory: {summary.activation_bytes_per_image / 2**20:.2f} MiB per image"
        " (sum of layer outputs, forward pass)",
    ]
    return "\n".join(lines)


def _si(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f} {unit} ({value:,.0f})"
    return f"{value:,.0f}"
