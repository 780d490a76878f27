"""Which runtime computes inference on a CPU: PyTorch itself, or the same (BN-folded) model exported to ONNX and
run by ONNX Runtime.

On a CPU that computes in fp32 (no native bf16), ONNX Runtime's kernels fuse the BatchNorm, ReLU and residual add
passes that PyTorch's eager model runs one by one: measured on a 2-core AVX2 EPYC at 1.3-1.8x PyTorch's images/s
for the CIFAR ResNets and about 3x for the pre-activation bottleneck nets, whose 256-channel tensors make those
passes memory-bound (benchmarks/README.md, "CPU inference through ONNX Runtime"). Where the CPU has native bf16,
PyTorch's bf16 path is used as before (not measured against ONNX Runtime there, so the rule stays with it).

The export costs a few seconds; its file is kept in the cache (``$RESNETLAB_CACHE/onnx``, named by a digest of
the model's structure, weights and input size), and each session is checked against PyTorch before use.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from resnetlab.errors import UserError, first_line

CHOICES = ("auto", "torch", "onnxruntime")
PACKAGES = ("onnx", "onnxscript", "onnxruntime")  # what exporting and running need: resnetlab[export]
MIN_IMAGES = 5_000  # auto: below this the one-time export (seconds) costs more than the faster pass saves
TOLERANCE = 1e-3  # max abs logit difference against PyTorch accepted before a session is used


def onnxruntime_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in PACKAGES)


@dataclass(frozen=True)
class Runtime:
    requested: str  # auto | torch | onnxruntime
    name: str  # torch | onnxruntime
    reason: str

    def line(self) -> str:
        return f"runtime: {self.name} (--runtime {self.requested}: {self.reason})"


def choose_runtime(requested: str, device: torch.device | str, bf16: bool, images: int,
                   installed: bool | None = None) -> Runtime:
    """The runtime for ``images`` images on ``device`` under ``--runtime requested``; ``bf16``: the precision
    chosen for the pass; ``installed`` replaces the check for ONNX Runtime (tests)."""
    if requested not in CHOICES:
        raise UserError(f"--runtime must be one of {', '.join(CHOICES)}, got {requested!r}")
    device = torch.device(device)
    installed = onnxruntime_installed() if installed is None else installed
    if requested == "torch":
        return Runtime(requested, "torch", "as asked")
    if requested == "onnxruntime":
        if device.type != "cpu":
            raise UserError(f"--runtime onnxruntime runs on the CPU; use --device cpu, or --runtime torch on "
                            f"{device}")
        if bf16:
            raise UserError("--runtime onnxruntime computes in fp32: add --amp off, or use --runtime torch for bf16")
        if not installed:
            raise UserError("ONNX Runtime is not installed: pip install 'resnetlab[export]', or use --runtime torch")
        return Runtime(requested, "onnxruntime", "as asked")
    if device.type != "cpu":
        return Runtime(requested, "torch", f"PyTorch on {device.type}")
    if bf16:
        return Runtime(requested, "torch", "bf16 on this CPU is PyTorch's")
    if not installed:
        return Runtime(requested, "torch", "ONNX Runtime is not installed; pip install 'resnetlab[export]' makes "
                                           "fp32 CPU inference 1.3-3x faster")
    if images < MIN_IMAGES:
        return Runtime(requested, "torch", f"{images:,} image{'s' * (images != 1)}, too few to pay for an export "
                                           f"(ONNX Runtime from {MIN_IMAGES:,})")
    return Runtime(requested, "onnxruntime", f"fp32 on the CPU, {images:,} images, ONNX Runtime installed")


class OnnxRuntimeModel(nn.Module):
    """An exported graph in place of the model: takes float32 images and returns logits, torch tensors on the
    CPU, so that ``evaluate`` and ``predict_files`` use it as they use the model."""

    def __init__(self, session: object, path: Path) -> None:
        super().__init__()
        self.session = session
        self.path = path

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        from resnetlab.export import INPUT_NAME, OUTPUT_NAME

        batch = images.detach().to("cpu", torch.float32).contiguous().numpy()  # ONNX graphs are NCHW
        (logits,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})
        return torch.from_numpy(logits)


def model_digest(model: nn.Module, image_size: int) -> str:
    """Names an export: the model's structure (its repr), every tensor of its state, the input size and the
    torch version (the exporter's)."""
    digest = hashlib.sha256(f"{model!r}|{image_size}|{torch.__version__}".encode())
    for key, tensor in model.state_dict().items():
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:32]


def onnxruntime_model(model: nn.Module, image_size: int, cache_dir: str | Path | None = None) -> OnnxRuntimeModel:
    """``model`` (on the CPU, eval mode) as an ONNX Runtime session, exported once into the cache and checked
    against PyTorch on random batches."""
    from resnetlab.data.cache import resolve_cache_dir
    from resnetlab.export import export_onnx, verify_onnx

    model = model.cpu().eval()
    path = resolve_cache_dir(cache_dir) / "onnx" / f"{model_digest(model, image_size)}.onnx"
    session = None
    if path.is_file():
        try:
            session = open_session(path)
        except UserError:  # damaged on disk, or written for another ONNX Runtime: exported again
            path.unlink()
    if session is None:
        export_onnx(model, path, image_size)
        session = open_session(path)
    difference = verify_onnx(path, model, (2,), session=session)
    if not difference < TOLERANCE:
        raise UserError(f"ONNX Runtime's logits differ from PyTorch's by up to {difference:.3g} (limit "
                        f"{TOLERANCE:g}); use --runtime torch")
    return OnnxRuntimeModel(session, path)


def open_session(path: Path) -> object:
    """An ONNX Runtime session of ``path``; ONNX Runtime's own exceptions become one line (``prepare``'s ``auto``
    then falls back to PyTorch)."""
    from resnetlab.export import onnx_session

    try:
        return onnx_session(path)
    except Exception as error:  # onnxruntime raises its own classes (Fail, InvalidGraph, ...), not UserError
        message = f"ONNX Runtime cannot load the export {path}: {first_line(error)}; use --runtime torch"
        raise UserError(message) from error


def prepare(runtime: Runtime, model: nn.Module, image_size: int) -> tuple[nn.Module, Runtime]:
    """The module that computes under ``runtime``, and the runtime it really is: ``auto`` falls back to PyTorch,
    saying why on stderr, when the export or its check fails; an explicit ``onnxruntime`` fails in one line."""
    if runtime.name == "torch":
        return model, runtime
    try:
        return onnxruntime_model(model, image_size), runtime
    except UserError as error:
        if runtime.requested != "auto":
            raise
        print(f"ONNX Runtime not used: {error}", file=sys.stderr)
        return model, replace(runtime, name="torch", reason=f"the export failed ({error})")
