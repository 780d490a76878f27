"""Activation checkpointing for very deep nets (ResNet-1202, ResNet-1001): keep only the input of every k-th
block during the forward pass and recompute the rest during backward, trading compute for memory.

Recomputing a block in training mode would update its BatchNorm running statistics a second time; the
recomputation therefore runs with those updates switched off, so statistics equal a run without checkpointing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from functools import partial

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from resnetlab.errors import UserError

PER_STAGE = -1  # checkpoint whole stages instead of groups of k blocks


@contextmanager
def frozen_norm_statistics(modules: Sequence[nn.Module]) -> Iterator[None]:
    """BatchNorm layers normalise with batch statistics but leave running mean/var and the counter untouched."""
    norms = [m for module in modules for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(norm.momentum, None if norm.num_batches_tracked is None else norm.num_batches_tracked.clone())
             for norm in norms]
    for norm in norms:
        norm.momentum = 0.0
    try:
        yield
    finally:
        for norm, (momentum, tracked) in zip(norms, saved):
            norm.momentum = momentum
            if tracked is not None:
                norm.num_batches_tracked.copy_(tracked)


def _run(blocks: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
    for block in blocks:
        x = block(x)
    return x


def _contexts(blocks: Sequence[nn.Module]):
    return nullcontext(), frozen_norm_statistics(blocks)


def run_blocks(blocks: Sequence[nn.Module], x: torch.Tensor, every: int) -> torch.Tensor:
    """Apply ``blocks`` in order; with ``every`` > 0 (or ``PER_STAGE``) checkpoint groups of that many blocks."""
    blocks = list(blocks)
    if every == 0 or not torch.is_grad_enabled():
        return _run(blocks, x)
    size = len(blocks) if every == PER_STAGE else every
    for start in range(0, len(blocks), size):
        group = blocks[start:start + size]
        x = checkpoint(partial(_run, group), x, use_reentrant=False, context_fn=partial(_contexts, group))
    return x


class GradCheckpointingMixin:
    """``model.set_grad_checkpointing(k)`` as in timm; the model's forward passes each stage through run_blocks."""

    grad_checkpointing: int = 0

    def set_grad_checkpointing(self, every: int = 1) -> None:
        """Checkpoint every ``every`` blocks (``PER_STAGE`` = -1: whole stages; 0: off)."""
        if every < PER_STAGE:
            raise UserError(f"checkpointing interval must be -1 (per stage), 0 (off) or positive, got {every}")
        self.grad_checkpointing = every
