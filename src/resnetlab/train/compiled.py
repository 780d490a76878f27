"""Inference through ``torch.compile`` with inductor's freezing, for the CPU (and any device inductor serves).

Freezing turns the eval-mode model's weights into constants of the compiled graph, so that inductor folds
BatchNorm into the convolutions, lets oneDNN pre-pack the weights into its blocked layout once, and fuses each
convolution with its bias, ReLU and residual add; the elementwise passes that eager mode runs after every
convolution disappear. Compilation costs seconds (benchmarks/README.md has the figures); inductor keeps its
compiled code in its cache directory (``TORCHINDUCTOR_CACHE_DIR``, by default under the system's temporary
folder), so a second process compiling the same model and batch shape is quicker.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn

from resnetlab.train.evaluate import autocast_context


def compile_for_inference(model: nn.Module, example: torch.Tensor, amp: bool = False
                          ) -> tuple[Callable[[torch.Tensor], torch.Tensor], float]:
    """(the compiled forward, seconds spent compiling it on ``example``'s shape); ``model`` must be in eval mode,
    ``amp``: compiled for bf16 autocast (then call it under the same autocast).

    Call the result under ``torch.inference_mode()`` or ``torch.no_grad()`` (freezing needs it). A batch of another
    size compiles once more (``dynamic=False``: fixed shapes give oneDNN its best kernels), so the caller keeps
    batches of one size, the last one padded if need be.
    """
    if model.training:
        raise ValueError("compile_for_inference needs a model in eval mode")
    compiled = torch.compile(model, dynamic=False, options={"freezing": True})
    start = time.perf_counter()
    with torch.inference_mode(), autocast_context(example.device, amp):
        compiled(example)
    return compiled, time.perf_counter() - start
