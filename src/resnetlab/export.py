"""Inference export: a model to ONNX with a dynamic batch, checked against PyTorch with ONNX Runtime, and timed.

The ONNX graph takes ``images``, float32 NCHW already normalized the way the model was trained
(``(pixels / 255 - mean) / std``, see `resnetlab.data.Normalizer`), and returns ``logits`` (N, classes). With
``include_preprocessing`` the normalizer is baked into the graph and ``images`` are uint8 NCHW RGB pixels instead.
The file's metadata_props (``classes``, ``normalization``, ``mean``, ``std``, ``input``...) say which.

Uses torch's torch.export-based exporter (the default since torch 2.9; the TorchScript one is deprecated). It
needs ``onnx`` and ``onnxscript``; verifying and timing need ``onnxruntime``: ``pip install resnetlab[export]``.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import json
import logging
import statistics
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from resnetlab.data import Normalizer
from resnetlab.errors import UserError, first_line
from resnetlab.files import atomic_path

INPUT_NAME, OUTPUT_NAME = "images", "logits"


def require(module: str) -> ModuleType:
    """Import an optional dependency of export, or say in one line how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"{module} is not installed: pip install 'resnetlab[export]'") from None


class WithPreprocessing(nn.Module):
    """``model(normalizer(images))`` as one module, so that an exported graph takes uint8 pixels."""

    def __init__(self, model: nn.Module, normalizer: Normalizer) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", normalizer.mean.clone())
        self.register_buffer("std", normalizer.std.clone())  # ones for "pixel_mean" and "none": an exact no-op

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model((images.to(torch.float32) / 255.0 - self.mean) / self.std)


def describe_input(image_size: int, normalizer: Normalizer | None, include_preprocessing: bool) -> dict[str, str]:
    """The metadata that tells a deployer what to feed the graph."""
    shape = f"(N, 3, {image_size}, {image_size})"
    if include_preprocessing:
        info = {"input": f"{INPUT_NAME}: uint8 {shape} RGB pixels 0..255; the normalization is inside the graph"}
    else:
        info = {"input": f"{INPUT_NAME}: float32 {shape} RGB, normalized: x = (pixels / 255 - mean) / std"}
    if normalizer is not None:
        info["normalization"] = normalizer.kind
        info["std"] = json.dumps(normalizer.std.flatten().tolist())
        info["mean"] = (json.dumps(normalizer.mean.flatten().tolist()) if normalizer.kind != "pixel_mean" else
                        f"the training images' mean image, 3x{image_size}x{image_size}, is in the checkpoint's "
                        "normalizer (export with --include-preprocessing to put it in the graph)")
    return info


def export_onnx(model: nn.Module, path: str | Path, image_size: int, opset: int | None = None, *,
                normalizer: Normalizer | None = None, classes: Sequence[str] | None = None,
                include_preprocessing: bool = False, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (on the CPU, eval mode) as an ONNX file with a dynamic batch, atomically.

    Args:
        image_size: side of the square input the graph is fixed to.
        opset: ONNX opset; None for the exporter's default.
        normalizer: the training normalizer, described in the metadata (required by ``include_preprocessing``).
        classes: class names, stored as JSON in the ``classes`` metadata entry.
        include_preprocessing: bake the normalizer in, so that the graph takes uint8 pixels.
        metadata: further entries (values that are not strings are stored as JSON).
    """
    for module in ("onnx", "onnxscript"):
        require(module)
    path = Path(path)
    model = copy.deepcopy(model).cpu().eval()
    if include_preprocessing:
        if normalizer is None:
            raise UserError("include_preprocessing needs the model's normalizer")
        model = WithPreprocessing(model, normalizer).eval()
    dtype = torch.uint8 if include_preprocessing else torch.float32
    example = torch.zeros(2, 3, image_size, image_size, dtype=dtype)  # batch 2: a batch of 1 would be specialized
    with _quiet_exporter():
        try:
            program = torch.onnx.export(model, (example,), dynamo=True, opset_version=opset, verbose=False,
                                        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                        dynamic_shapes=({0: torch.export.Dim("batch")},))
        except Exception as error:  # torch.export and the translators raise many kinds; report one line
            raise UserError(f"ONNX export failed: {first_line(error)}") from error
    produced = program.model.opset_imports.get("")
    if opset is not None and produced != opset:  # the exporter falls back silently when it cannot convert
        raise UserError(f"the exporter cannot write opset {opset} for this model (it gives {produced})")
    entries = {**describe_input(image_size, normalizer, include_preprocessing), "image_size": str(image_size)}
    if classes is not None:
        entries["classes"] = json.dumps(list(classes))
    for key, value in (metadata or {}).items():
        entries[key] = value if isinstance(value, str) else json.dumps(value)
    program.model.metadata_props.update(entries)
    with atomic_path(path) as temporary:
        program.save(temporary, external_data=False)  # one self-contained file (fine below 2 GB)
    return path


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's chatter (missing torchvision ops, deprecations inside torch) during one export."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def onnx_session(path: str | Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session (``threads``: intra-op threads, None for ONNX Runtime's default)."""
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _random_input(session: Any, batch_size: int, generator: np.random.Generator) -> np.ndarray:
    spec = session.get_inputs()[0]
    shape = (batch_size, *spec.shape[1:])
    if spec.type == "tensor(uint8)":
        return generator.integers(0, 256, size=shape, dtype=np.uint8)
    return generator.standard_normal(shape).astype(np.float32)


def verify_onnx(path: str | Path, model: nn.Module, batch_sizes: Sequence[int] = (1, 3),
                normalizer: Normalizer | None = None, seed: int = 0, session: Any | None = None) -> float:
    """Max abs logit difference between ONNX Runtime and PyTorch (fp32, CPU) on the same random inputs.

    Several batch sizes prove the batch dimension dynamic. A graph with the preprocessing inside takes uint8
    pixels and is compared with ``model(normalizer(pixels))``: the library's own normalizer is the reference.
    ``session``: an open session of ``path`` to check (and go on using), instead of a new one.
    """
    session = onnx_session(path) if session is None else session
    model = copy.deepcopy(model).cpu().float().eval()
    generator = np.random.default_rng(seed)
    worst = 0.0
    for batch_size in batch_sizes:
        inputs = _random_input(session, batch_size, generator)
        (onnx_logits,) = session.run([OUTPUT_NAME], {INPUT_NAME: inputs})
        with torch.inference_mode():
            x = torch.from_numpy(inputs)
            if x.dtype == torch.uint8:
                if normalizer is None:
                    raise UserError(f"{path} takes uint8 pixels: verifying it needs the model's normalizer")
                x = normalizer(x)
            torch_logits = model(x).numpy()
        if onnx_logits.shape != torch_logits.shape:
            raise UserError(f"{path}: logits of shape {onnx_logits.shape}, PyTorch gives {torch_logits.shape}")
        worst = max(worst, float(np.abs(onnx_logits - torch_logits).max()))
    return worst


@dataclass
class Throughput:
    """Inference speed of one runtime at one batch size, steady state (after warm-up)."""

    images_per_second: float  # median over the repeats
    per_repeat: list[float]  # images/s of each timed repeat
    images: int  # images timed, all repeats together
    seconds: float  # time spent in the timed repeats
    batch_size: int
    runtime: str
    threads: int | None


def _measure(step: Callable[[], object], batch_size: int, runtime: str, threads: int | None, seconds: float,
             iterations: int | None, repeats: int, warmup: int,
             synchronize: Callable[[], object] = lambda: None) -> Throughput:
    """Run ``step`` (one batch) ``warmup`` times, then ``repeats`` timed rounds of ``iterations`` batches each
    (or of about ``seconds / repeats`` seconds each when ``iterations`` is None)."""
    if batch_size < 1 or repeats < 1 or (iterations is not None and iterations < 1):
        raise UserError("batch size, repeats and iterations must be positive")
    for _ in range(warmup):
        step()
    synchronize()
    rates, images, total = [], 0, 0.0
    for _ in range(repeats):
        count, start = 0, time.perf_counter()
        while (count < iterations) if iterations is not None else (time.perf_counter() - start < seconds / repeats):
            step()
            count += 1
        synchronize()  # CUDA runs asynchronously: stop the clock when the work is done
        elapsed = time.perf_counter() - start
        rates.append(count * batch_size / elapsed)
        images, total = images + count * batch_size, total + elapsed
    return Throughput(statistics.median(rates), rates, images, total, batch_size, runtime, threads)


def onnxruntime_throughput(path: str | Path, batch_size: int, *, seconds: float = 3.0, iterations: int | None = None,
                           repeats: int = 5, warmup: int = 3, threads: int | None = None) -> Throughput:
    """Steady-state images/s of an ONNX file on ONNX Runtime's CPU provider, on one fixed random batch."""
    session = onnx_session(path, threads)
    feed = {INPUT_NAME: _random_input(session, batch_size, np.random.default_rng(0))}
    return _measure(lambda: session.run([OUTPUT_NAME], feed), batch_size, "onnxruntime", threads, seconds,
                    iterations, repeats, warmup)
