"""Inference through ``torch.compile`` with inductor's freezing, for the CPU (and any device inductor serves).

Freezing turns the eval-mode model's weights into constants of the compiled graph, so that inductor folds
BatchNorm into the convolutions, lets oneDNN pre-pack the weights into its blocked layout once, and fuses each
convolution with its bias and ReLU; eager mode instead runs a separate elementwise pass after every convolution.
Compilation costs seconds to a minute on a small CPU (benchmarks/README.md has the figures); inductor keeps the
code it generated in its cache directory (``TORCHINDUCTOR_CACHE_DIR``, by default under the system's temporary
folder), so later processes compiling the same model and batch shape spend less.
"""

from __future__ import annotations

import torch
from torch import nn


def compile_for_inference(model: nn.Module) -> nn.Module:
    """``model`` (in eval mode) compiled with freezing; it compiles on its first call, which must run under
    ``torch.inference_mode()`` or ``torch.no_grad()``. Shapes are static (oneDNN picks its kernels per shape), so
    each new batch size compiles once more: keep batches of one size where speed matters."""
    if model.training:
        raise ValueError("compile_for_inference needs a model in eval mode")
    return torch.compile(model, dynamic=False, options={"freezing": True})
