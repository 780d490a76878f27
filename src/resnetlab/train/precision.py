"""Which precision a run computes in: bf16 autocast where the hardware does bf16 arithmetic, fp32 elsewhere.

``--amp auto`` (the default of ``train``, ``eval``, ``predict``, ``bench`` and the experiments) is decided here and
only here. On CUDA it is bf16 where the GPU has bf16 units (Ampere and later). On a CPU it is bf16 only where the
processor multiplies bf16 natively, with AMX-BF16 tiles or AVX512-BF16 instructions (Intel Cooper Lake, Sapphire
Rapids and later; AMD Zen 4 and later): there, oneDNN's bf16 convolutions ran ResNet-20 training 1.7x and inference
2.7x faster than fp32 on a Sapphire Rapids Xeon, 1.4x and 1.9x on a Zen 5 EPYC, where a whole 11-epoch CIFAR-10 run
took 1.41x less time at the same accuracy (benchmarks/README.md). Without them (AVX2-only processors, older AVX-512
ones) PyTorch emulates bf16 by converting to fp32 and back, which is slower than fp32 itself, so ``auto`` stays fp32.
``--amp bf16`` or ``--amp off`` force either. ``autocast_context`` is the one place the choice is applied
(training step, evaluation, inference, bench).
"""

from __future__ import annotations

import functools
import platform
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo names of the native bf16 instructions (x86)
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", *BF16_FLAGS, "amx_tile")  # what bench prints
CHOICES = ("auto", "bf16", "off")


@dataclass(frozen=True)
class CpuFacts:
    """The processor as Linux describes it, and the vector unit PyTorch's own kernels dispatched to."""

    model: str
    capability: str  # torch.backends.cpu.get_cpu_capability(): DEFAULT, AVX2, AVX512, ...
    flags: frozenset[str]
    onednn_bf16: bool = False  # whether this PyTorch's oneDNN runs bf16 convolutions here (else: a slow fallback)
    generation: str = ""  # "family 26 model 2": tells processors apart where a VM names them all "AMD EPYC"

    @property
    def native_bf16(self) -> bool:
        """bf16 instructions in the processor, and a oneDNN that uses them: without oneDNN's bf16 path (AVX2-only
        processors, or a PyTorch built without it) a bf16 convolution falls back to ``aten::_slow_conv2d``."""
        return self.onednn_bf16 and any(flag in self.flags for flag in BF16_FLAGS)

    def speed_flags(self) -> list[str]:
        return [flag for flag in SPEED_FLAGS if flag in self.flags]

    def describe(self) -> str:
        """One line: ``AMD EPYC, family 25 model 1 (torch AVX2; avx2 fma; no native bf16)``."""
        bf16 = "native bf16" if self.native_bf16 else "no native bf16"
        name = f"{self.model}, {self.generation}" if self.generation else self.model
        return f"{name} (torch {self.capability}; {' '.join(self.speed_flags()) or 'no AVX'}; {bf16})"

    def to_dict(self) -> dict[str, Any]:
        return {"cpu_model": self.model, "cpu_generation": self.generation, "cpu_capability": self.capability,
                "cpu_flags": self.speed_flags(), "cpu_onednn_bf16": self.onednn_bf16,
                "cpu_native_bf16": self.native_bf16}


def parse_cpuinfo(text: str) -> tuple[str, str, frozenset[str]]:
    """(model name, generation, flags) of the first processor in a /proc/cpuinfo text; the generation is x86's
    "family F model M" (AMD family 25 is Zen 3/4, 26 is Zen 5), empty where the text has none."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())  # the first processor's lines come first
    flags = frozenset((fields.get("flags") or fields.get("Features", "")).split())  # x86: flags, ARM: Features
    family, model_number = fields.get("cpu family", ""), fields.get("model", "")
    generation = f"family {family} model {model_number}" if family and model_number else ""
    return fields.get("model name", ""), generation, flags


@functools.cache
def cpu_facts() -> CpuFacts:
    try:
        model, generation, flags = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:  # not Linux: no flags known, so auto stays fp32
        model, generation, flags = "", "", frozenset()
    return CpuFacts(model or platform.processor() or platform.machine(), torch.backends.cpu.get_cpu_capability(),
                    flags, onednn_bf16_supported(), generation)


def onednn_bf16_supported() -> bool:
    """oneDNN's own answer (AVX512-BW/VL/DQ or newer on x86); False where this PyTorch has no oneDNN."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@dataclass(frozen=True)
class Precision:
    requested: str  # auto | bf16 | off
    bf16: bool  # whether the step runs under bf16 autocast
    reason: str

    @property
    def name(self) -> str:
        return "bf16" if self.bf16 else "fp32"

    def line(self) -> str:
        return f"precision: {'bf16 autocast' if self.bf16 else 'fp32'} (--amp {self.requested}: {self.reason})"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "precision": self.name}


def choose_precision(requested: str, device: torch.device | str, cpu: CpuFacts | None = None) -> Precision:
    """The precision for ``device`` under ``--amp requested``; ``cpu`` replaces this machine's facts (tests)."""
    if requested not in CHOICES:
        raise ValueError(f"amp must be one of {', '.join(CHOICES)}, got {requested!r}")
    device = torch.device(device)
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        where = f"{torch.cuda.get_device_name(device)} {'has' if native else 'has no'} bf16 units"
    elif device.type == "cpu":
        cpu = cpu or cpu_facts()
        native = cpu.native_bf16
        found = [flag for flag in BF16_FLAGS if flag in cpu.flags]
        where = (f"{cpu.model} has {' and '.join(found)}" if native
                 else f"{cpu.model} has no native bf16 (no amx_bf16 or avx512_bf16)" if not found
                 else f"{cpu.model} has {' and '.join(found)}, but this PyTorch's oneDNN has no bf16 path")
    else:
        native, where = False, f"no bf16 rule for {device.type}"
    if requested == "off":
        return Precision(requested, False, "forced")
    if requested == "bf16":
        return Precision(requested, True, "forced" + ("" if native else f"; {where}, so it is emulated and slow"))
    return Precision(requested, native, where)


def autocast_context(device: torch.device, enabled: bool, cache: bool = True) -> AbstractContextManager:
    """bf16 autocast where ``enabled`` (``Precision.bf16``); a no-op otherwise.

    ``cache=False`` for a step that may be captured in a CUDA graph: autocast's cache of cast weights would
    hold tensors from the capture's memory pool across replays (the PyTorch CUDA-graph notes ask for it).
    """
    return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache) if enabled else nullcontext()
