"""`resnetlab bench`: resnetlab's training and inference throughput next to the typical pipeline's, measured in
the same process on the same device."""

from __future__ import annotations

import argparse
import importlib.util
import json
from dataclasses import asdict, replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from resnetlab.cli_config import add_config_flags, config_overrides, parse_ints
from resnetlab.errors import UserError

if TYPE_CHECKING:
    import torch

    from resnetlab.bench import BenchResult

BENCH_FIELDS = ("augmentation", "amp", "channels_last", "compile", "cuda_graphs", "activation_checkpointing")
TEST_SET_IMAGES = 10_000  # CIFAR's: the pass whose runtime --runtime auto times
BASELINE_FUNCTIONS = ("train_throughput", "inference_throughput")
BASELINE_SHAPE = "a Python script defining train_throughput and inference_throughput, as resnetlab/typical_pipeline.py"


def load_baseline(path: Path | None) -> ModuleType:
    """The typical pipeline of the package (resnetlab/typical_pipeline.py), or another script with the same two
    functions, loaded by path."""
    if path is None:
        return importlib.import_module("resnetlab.typical_pipeline")
    if not path.is_file():
        raise UserError(f"baseline not found: {path} (drop --baseline for the typical pipeline, or use --no-baseline)")
    spec = importlib.util.spec_from_file_location("resnetlab_typical_pipeline", path)
    if path.suffix != ".py" or spec is None or spec.loader is None:
        raise UserError(f"baseline {path} is not a .py file; --baseline takes {BASELINE_SHAPE}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # whatever the script raises while it is imported: its own fault, not resnetlab's
        detail = " ".join(str(error).split())
        raise UserError(f"cannot load baseline {path}: {type(error).__name__}: {detail}") from None
    missing = [name for name in BASELINE_FUNCTIONS if not callable(getattr(module, name, None))]
    if missing:
        raise UserError(f"baseline {path} defines no {' and no '.join(missing)}; --baseline takes {BASELINE_SHAPE}")
    return module


def split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse, before anything is measured, settings that would measure nothing or a throughput that means
    nothing, and flags that contradict each other."""
    if args.steps < 1:
        raise UserError(f"--steps must be at least 1 (timed steps per measurement), got {args.steps}")
    if args.warmup < 0:
        raise UserError(f"--warmup cannot be negative (0 for no untimed steps), got {args.warmup}")
    if args.workers < 0:
        raise UserError(f"--workers cannot be negative (0 loads the baseline's data in the main process), got "
                        f"{args.workers}")
    if args.no_baseline and args.baseline:
        raise UserError("give --baseline SCRIPT or --no-baseline, not both")


def cmd_bench(args: argparse.Namespace) -> None:
    from resnetlab.bench import bench_config, bench_inference, bench_train, format_table, machine_lines, ratio_lines
    from resnetlab.models import model_info
    from resnetlab.train.environment import pick_device

    check_arguments(args)
    device = pick_device(args.device)
    config = bench_config(device)
    config = replace(config, **config_overrides(args, BENCH_FIELDS)).validate()
    modes = split_list(args.mode)
    if not modes or not set(modes) <= {"train", "infer"}:
        raise UserError(f"--mode takes train and/or infer, got {args.mode!r}")
    models = split_list(args.models)
    if not models:
        raise UserError(f"--models needs at least one name, e.g. resnet20,resnet56, got {args.models!r}")
    for name in models:
        model_info(name)
    batch_sizes = args.batch_sizes
    if min(batch_sizes) < 1:
        raise UserError(f"--batch-sizes needs positive integers, e.g. 128,512, got {min(batch_sizes)}")
    runtimes, runtime_line = inference_runtimes(args.runtime, device, config.amp) if "infer" in modes else ((), "")
    baseline = None if args.no_baseline else load_baseline(Path(args.baseline) if args.baseline else None)
    common = {"steps": args.steps, "warmup": args.warmup}
    cases = [(name, batch, mode) for name in models for batch in batch_sizes for mode in ("train", "infer")
             if mode in modes]
    # The baseline runs first, all of it: resnetlab's CPU runs change process-wide malloc settings
    # (environment.keep_freed_memory_for_reuse), and the typical pipeline is measured without them.
    baselines = {}
    if baseline is not None:
        for name, batch, mode in cases:
            baselines[name, batch, mode] = (
                baseline.train_throughput(name, batch, str(device), workers=args.workers, **common)
                if mode == "train" else baseline.inference_throughput(name, batch, str(device), **common))
    results = []
    for name, batch, mode in cases:
        if (name, batch, mode) in baselines:
            results.append(baselines[name, batch, mode])
        if mode == "train":
            results.append(bench_train(name, batch, device, config=config, data=args.data, **common))
            continue
        if "torch" in runtimes:
            results.append(bench_inference(name, batch, device, config=config, fold_bn=args.fold_bn == "on",
                                           **common))
        if "onnxruntime" in runtimes:
            results.append(onnxruntime_result(name, batch, args))
    profiles = []
    if args.profile and "train" in modes:
        from resnetlab.bench import profile_train_step

        profiles = [profile_train_step(name, batch, device, config=config) for name in models for batch in batch_sizes]
    if args.json:
        rows = [r.to_dict() for r in results]
        if profiles:
            print(json.dumps({"results": rows, "profiles": [asdict(p) for p in profiles]}, indent=2))
        else:
            print(json.dumps(rows, indent=2))
        return
    print("\n".join(machine_lines(device) + ([runtime_line] if runtime_line else [])))
    print(format_table(results))
    print("\n".join(ratio_lines(results)))
    for profile in profiles:
        print(f"\n{profile.summary()}\n{profile.table}")


def inference_runtimes(requested: str, device: torch.device, amp: str) -> tuple[tuple[str, ...], str]:
    """The runtimes the inference benchmark times, and the line that says why: ``auto`` times the one ``eval`` of
    the whole test set would use here (runtime.py), ``both`` times PyTorch and ONNX Runtime side by side."""
    from resnetlab.runtime import choose_runtime
    from resnetlab.train.precision import choose_precision

    bf16 = choose_precision(amp, device).bf16
    if requested == "both":
        choose_runtime("onnxruntime", device, bf16, TEST_SET_IMAGES)  # refused here as eval would refuse it
        return ("torch", "onnxruntime"), "runtime: torch and onnxruntime (--runtime both)"
    runtime = choose_runtime(requested, device, bf16, TEST_SET_IMAGES)
    return (runtime.name,), runtime.line()


def onnxruntime_result(name: str, batch: int, args: argparse.Namespace) -> BenchResult:
    import tempfile
    import time

    import torch

    from resnetlab.bench import BenchResult, peak_memory_mib
    from resnetlab.export import export_onnx, onnxruntime_throughput
    from resnetlab.models import create_model, model_info

    size = model_info(name).input_size
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        path = export_onnx(create_model(name).eval(), Path(folder) / f"{name}.onnx", size)
        export_seconds = time.perf_counter() - started  # once per model; eval caches it (runtime.py)
        measured = onnxruntime_throughput(path, batch, iterations=args.steps, repeats=1, warmup=args.warmup)
    return BenchResult("onnxruntime", "infer", name, batch, "cpu", measured.images_per_second, measured.images,
                       measured.seconds, export_seconds, peak_memory_mib(torch.device("cpu")),
                       "CPUExecutionProvider, fp32, warm-up s = the export")


def add_commands(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser("bench", help="training and inference img/s against the typical pipeline")
    bench.add_argument("--models", default="resnet20", help="comma-separated names, e.g. resnet20,resnet56")
    bench.add_argument("--batch-sizes", type=parse_ints, default="128", help="comma-separated, e.g. 128,512")
    bench.add_argument("--mode", default="train,infer", help="train, infer, or train,infer (the default)")
    bench.add_argument("--device", default="auto")
    bench.add_argument("--data", default="synthetic", help="data for the training benchmark (default synthetic)")
    bench.add_argument("--steps", type=int, default=20, help="timed steps per measurement (at least 1)")
    bench.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation happens here; 0 for "
                       "none)")
    bench.add_argument("--fold-bn", choices=["on", "off"], default="on",
                       help="inference with BatchNorm folded into the convolutions, as eval and predict run it")
    bench.add_argument("--runtime", choices=["auto", "torch", "onnxruntime", "both"], default="auto",
                       help="inference runtime: auto (the default) times the one eval uses for a whole test set "
                            "here; onnxruntime: fp32 on the CPU, needs resnetlab[export]; both: side by side")
    bench.add_argument("--no-baseline", action="store_true", help="skip the typical pipeline")
    bench.add_argument("--baseline", help="path of another baseline script, defining train_throughput and "
                       "inference_throughput (default: resnetlab.typical_pipeline; not with --no-baseline)")
    bench.add_argument("--workers", type=int, default=2, help="DataLoader workers of the baseline")
    bench.add_argument("--profile", action="store_true",
                       help="also profile the eager training step: wall vs GPU kernel time per step, top operators")
    bench.add_argument("--json", action="store_true")
    add_config_flags(bench, BENCH_FIELDS, title="training settings measured (default: the loop's choice on the device)")
    bench.set_defaults(func=cmd_bench)
