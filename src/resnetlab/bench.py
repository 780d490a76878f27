"""Throughput of resnetlab's training step and inference, measured the way the training loop runs them.

Numbers are steady-state images per second: warm-up steps (which include any compilation) are timed and
reported separately, and the device is synchronised before the clock is read.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from resnetlab.data import DeviceLoader, fit_normalizer, load_dataset
from resnetlab.models import create_model, fold_batchnorm, model_info
from resnetlab.train.announce import plural
from resnetlab.train.compiled import compile_for_inference
from resnetlab.train.config import TrainConfig
from resnetlab.train.environment import keep_freed_memory_for_reuse
from resnetlab.train.graphs import GraphedStep, graphed_if_supported
from resnetlab.train.optim import build_optimizer
from resnetlab.train.precision import autocast_context, choose_precision, cpu_facts
from resnetlab.train.step import build_train_step


@dataclass
class BenchResult:
    pipeline: str  # resnetlab | baseline | onnxruntime
    mode: str  # train | infer
    model: str
    batch_size: int
    device: str
    images_per_sec: float
    images: int  # images processed in the timed part
    seconds: float  # timed part
    warmup_seconds: float  # warm-up steps, including compilation
    peak_memory_mib: float  # CUDA: peak allocated; CPU: peak resident set of the process
    settings: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def timed(run_step: Callable[[], None], steps: int, warmup: int, device: torch.device) -> tuple[float, float]:
    """(warm-up seconds, timed seconds) of ``warmup`` then ``steps`` calls."""
    start = time.perf_counter()
    for _ in range(warmup):
        run_step()
    synchronize(device)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        run_step()
    synchronize(device)
    return warm, time.perf_counter() - start


def bench_config(device: torch.device, **changes: Any) -> TrainConfig:
    """The settings the training loop would pick on ``device`` (``--amp auto``: train/precision.py; channels_last
    everywhere)."""
    base = TrainConfig(amp="auto", channels_last="on", weight_decay=5e-4, lr=0.1)
    return replace(base, **changes)


def training_step(model_name: str, batch_size: int, device: torch.device, config: TrainConfig,
                  data: str = "synthetic") -> tuple[Callable[[], None], Callable[[], bool]]:
    """(run one step, whether it is replayed as a CUDA graph) for resnetlab's training step as the loop builds it:
    device-resident data, the configured batched augmentation and precision, the CUDA graph where supported."""
    torch.backends.cudnn.benchmark = True  # as the training loop sets it (fixed shapes: autotuned once)
    if device.type == "cpu":
        keep_freed_memory_for_reuse()  # as the training loop does on a CPU
    info = model_info(model_name)
    size = config.image_size if info.input_size == 32 else info.input_size
    dataset = load_dataset(data, image_size=size, synthetic_size=(max(batch_size * 4, 512), 16))
    normalizer = fit_normalizer("channel", dataset.train.images)
    channels_last = config.channels_last == "on"
    loader = DeviceLoader(dataset.train, batch_size, device=device, normalizer=normalizer,
                          augmentation=config.augmentation, seed=0, channels_last=channels_last)
    model = create_model(model_name, num_classes=dataset.num_classes).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if config.activation_checkpointing:
        model.set_grad_checkpointing(config.activation_checkpointing)
    train_model = torch.compile(model) if config.compile else model
    optimizer = build_optimizer(model, config, device)
    amp = choose_precision(config.amp, device).bf16
    step = build_train_step(train_model, optimizer, config, device, amp, model)
    step, _ = graphed_if_supported(step, model, optimizer, config.cuda_graphs, device=device,
                                   checkpointing=bool(config.activation_checkpointing))
    batches = _cycle(loader)

    def run_step() -> None:
        step(*next(batches))

    return run_step, lambda: isinstance(step, GraphedStep) and step.captured


def bench_train(model_name: str, batch_size: int, device: torch.device, *, steps: int = 20, warmup: int = 5,
                config: TrainConfig | None = None, data: str = "synthetic") -> BenchResult:
    """Training images/s of resnetlab's step (``training_step``)."""
    config = config or bench_config(device)
    run_step, graphed = training_step(model_name, batch_size, device, config, data)
    reset_peak_memory(device)
    warm, seconds = timed(run_step, steps, warmup, device)
    settings = (f"{precision_setting(config.amp, device)} channels_last={config.channels_last} "
                f"compile={config.compile} graphs={'on' if graphed() else 'off'} "
                f"checkpointing={config.activation_checkpointing} "
                f"augmentation={config.augmentation}")
    return BenchResult("resnetlab", "train", model_name, batch_size, str(device), steps * batch_size / seconds,
                       steps * batch_size, seconds, warm, peak_memory_mib(device), settings)


@dataclass
class StepProfile:
    """Where one eager training step's time goes: wall time, the device's kernel time, and the top operators."""

    model: str
    batch_size: int
    device: str
    wall_ms: float  # per step, measured under the profiler (which adds some overhead of its own)
    device_ms: float | None  # per step, the sum of the GPU kernels' times (None on a CPU)
    kernels: float | None  # GPU kernels per step
    table: str  # torch.profiler's operator table, most expensive first

    @property
    def launch_bound_fraction(self) -> float | None:
        """The share of the wall time the GPU sits idle: what replaying a CUDA graph can win back."""
        return None if self.device_ms is None else max(0.0, 1 - self.device_ms / self.wall_ms)

    def summary(self) -> str:
        line = f"{self.model} batch {self.batch_size} ({self.device}, eager): {self.wall_ms:.2f} ms/step"
        if self.device_ms is not None:
            line += (f", GPU kernels {self.device_ms:.2f} ms/step ({self.kernels:.0f} kernels): idle "
                     f"{100 * self.launch_bound_fraction:.0f} % of the step; kernel-bound rate "
                     f"{self.batch_size / (self.device_ms / 1e3):,.0f} img/s")
        return line


def profile_train_step(model_name: str, batch_size: int, device: torch.device, *, steps: int = 10,
                       warmup: int = 5, config: TrainConfig | None = None, rows: int = 20) -> StepProfile:
    """torch.profiler over ``steps`` eager steps (no CUDA graph, so that each kernel is seen on its own)."""
    from torch.profiler import ProfilerActivity, profile

    config = replace(config or bench_config(device), cuda_graphs="off")
    run_step, _ = training_step(model_name, batch_size, device, config)
    for _ in range(warmup):
        run_step()
    synchronize(device)
    on_cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            run_step()
        synchronize(device)
        wall = (time.perf_counter() - start) / steps
    events = prof.key_averages()
    kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
    device_ms = sum(e.device_time_total for e in kernels) / steps / 1e3 if on_cuda else None
    count = sum(e.count for e in kernels) / steps if on_cuda else None
    table = events.table(sort_by="self_device_time_total" if on_cuda else "self_cpu_time_total", row_limit=rows,
                         max_name_column_width=60)
    return StepProfile(model_name, batch_size, str(device), wall * 1e3, device_ms, count, table)


def bench_inference(model_name: str, batch_size: int, device: torch.device, *, steps: int = 20, warmup: int = 5,
                    config: TrainConfig | None = None, fold_bn: bool = True) -> BenchResult:
    """Inference images/s: eval mode, ``torch.inference_mode``, the configured precision and memory format, and
    BatchNorm folded into the convolutions as ``resnetlab eval`` and ``predict`` run it (``fold_bn``);
    ``config.compile``: through ``compile_for_inference`` (inductor with freezing), its compilation counted in the
    warm-up seconds."""
    config = config or bench_config(device)
    torch.backends.cudnn.benchmark = True
    info = model_info(model_name)
    size = config.image_size if info.input_size == 32 else info.input_size
    model = create_model(model_name).eval()
    model = (fold_batchnorm(model) if fold_bn else model).to(device)
    images = torch.randn(batch_size, 3, size, size, device=device)
    if config.channels_last == "on":
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    reset_peak_memory(device)
    amp = choose_precision(config.amp, device).bf16
    forward = compile_for_inference(model) if config.compile else model

    def run_step() -> None:
        with torch.inference_mode(), autocast_context(device, amp):
            forward(images)

    warm, seconds = timed(run_step, steps, warmup, device)
    settings = (f"{precision_setting(config.amp, device)} channels_last={config.channels_last} "
                f"compile={config.compile} fold_bn={'on' if fold_bn else 'off'}")
    return BenchResult("resnetlab", "infer", model_name, batch_size, str(device), steps * batch_size / seconds,
                       steps * batch_size, seconds, warm, peak_memory_mib(device), settings)


def precision_setting(requested: str, device: torch.device) -> str:
    """``amp=auto:fp32``: what was asked and what it gave."""
    return f"amp={requested}:{choose_precision(requested, device).name}"


def machine_lines(device: torch.device) -> list[str]:
    """What the figures depend on, printed above the table: the processor (model, the flags that decide the speed
    of its kernels), the threads, the GPU, and the precision ``--amp auto`` chooses here."""
    lines = [f"processor: {cpu_facts().describe()}, {plural(torch.get_num_threads(), 'thread')}"]
    if device.type == "cuda":
        lines.append(f"gpu: {torch.cuda.get_device_name(device)}")
    lines.append(choose_precision("auto", device).line())
    return lines


def ratio_lines(results: list[BenchResult]) -> list[str]:
    """``resnetlab / typical pipeline``, one line per measured pair (the number the speed goals are stated in)."""
    baseline = {(r.mode, r.model, r.batch_size): r.images_per_sec for r in results if r.pipeline == "baseline"}
    return [f"{r.pipeline} / typical pipeline, {r.model} {r.mode} batch {r.batch_size}: "
            f"{r.images_per_sec / baseline[r.mode, r.model, r.batch_size]:.2f}x"
            for r in results if r.pipeline != "baseline" and (r.mode, r.model, r.batch_size) in baseline]


def _cycle(loader: DeviceLoader):
    epoch = 0
    while True:
        yield from loader.epoch(epoch)
        epoch += 1


def format_table(results: list[BenchResult]) -> str:
    """A fixed-width table with the ratio of each resnetlab row to the baseline row of the same setting."""
    baseline = {(r.mode, r.model, r.batch_size): r.images_per_sec for r in results if r.pipeline == "baseline"}
    header = (f"{'pipeline':<12} {'mode':<6} {'model':<14} {'batch':>5} {'img/s':>10} {'vs base':>8} "
              f"{'warm-up s':>9} {'peak MiB':>9}  settings")
    lines = [header, "-" * len(header)]
    for r in results:
        base = baseline.get((r.mode, r.model, r.batch_size))
        ratio = f"{r.images_per_sec / base:.2f}x" if base and r.pipeline != "baseline" else "-"
        lines.append(f"{r.pipeline:<12} {r.mode:<6} {r.model:<14} {r.batch_size:>5} {r.images_per_sec:>10,.0f} "
                     f"{ratio:>8} {r.warmup_seconds:>9.2f} {r.peak_memory_mib:>9.0f}  {r.settings}")
    return "\n".join(lines)
