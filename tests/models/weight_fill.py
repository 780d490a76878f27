"""Deterministic, version-stable weights for a ResNet state dict.

Only numpy's legacy ``RandomState`` is used (its streams are frozen across numpy
versions), and keys are filled in sorted order, so the same ``shapes`` give the same
tensors under any torch/numpy. Shared by the torchvision fixture generator (run in a
throwaway venv with torchvision) and the compatibility test (run in the project venv).
"""

from __future__ import annotations

import math

import numpy as np
import torch


def deterministic_state(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Fill every entry of ``shapes`` (state-dict key -> shape) from ``RandomState(0)``.

    In sorted key order:
      * weights with ndim > 1 (conv, linear): standard normal * sqrt(1 / fan_in),
        fan_in = prod(shape[1:]);
      * other ``weight`` (BatchNorm gamma): uniform(0.5, 1.5);
      * ``bias`` (conv / linear / BatchNorm beta): normal(0, 0.1);
      * ``running_mean``: normal(0, 0.1);
      * ``running_var``: uniform(0.5, 1.5);
      * ``num_batches_tracked``: ``tensor(0, dtype=int64)``.

    Floating tensors are float32. The result is returned in the order of ``shapes``.
    """
    rng = np.random.RandomState(0)
    filled: dict[str, torch.Tensor] = {}
    for key in sorted(shapes):
        shape = tuple(int(s) for s in shapes[key])
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "num_batches_tracked":
            filled[key] = torch.tensor(0, dtype=torch.int64)
            continue
        if leaf == "weight" and len(shape) > 1:
            fan_in = math.prod(shape[1:])
            arr = rng.standard_normal(shape) * math.sqrt(1.0 / fan_in)
        elif leaf == "weight":
            arr = rng.uniform(0.5, 1.5, size=shape)
        elif leaf in ("bias", "running_mean"):
            arr = rng.normal(0.0, 0.1, size=shape)
        elif leaf == "running_var":
            arr = rng.uniform(0.5, 1.5, size=shape)
        else:
            raise ValueError(f"deterministic_state: don't know how to fill {key!r} {shape}")
        filled[key] = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    return {key: filled[key] for key in shapes}
