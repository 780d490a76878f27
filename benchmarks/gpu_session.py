"""One GPU session's measurements in one command. Each part is timed against a budget and skipped, not cut
short, when it would not fit; results go to OUT/results.json as they come, so a killed session still leaves what
it measured. Every plan first runs the CUDA tests (tests/train/test_cuda.py: graphed vs eager step, resume of a
graphed run, evaluation under graphs). Plans (``--plan``):

- ``full``: throughput against the typical pipeline, a profile, very deep nets with and without activation
  checkpointing, the `fast` recipe's time to accuracy (3 seeds), compiled ResNet-20, the full `paper` recipe.
- ``follow-up``: compiled ResNet-56/110, the very deep nets graphed, a graphed run stopped and resumed.
- ``speed``: throughput, the `fast` recipe (3 seeds), compiled ResNet-20 (batch 512 and 1024), 56 and 110, what
  the BatchNorm kernels cost (fp16 / fp32 BN / NCHW probe), `fast` at batch 1024, a profile of the compiled step
  and inductor's coordinate-descent tuning, then the `paper` recipe if time is left.

    PYTHONPATH=src python benchmarks/gpu_session.py --data PATH/cifar10-jpeg.tar.xz --out OUT --budget 540
    PYTHONPATH=src python benchmarks/gpu_session.py --plan speed --smoke --out /tmp/smoke  # tiny, on the CPU
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from resnetlab.bench import bench_config, bench_inference, bench_train, profile_train_step, timed
from resnetlab.cli_bench import DEFAULT_BASELINE, load_baseline
from resnetlab.data import load_dataset
from resnetlab.models import create_model
from resnetlab.train.config import resolve_config
from resnetlab.train.environment import describe_environment
from resnetlab.train.graphs import GraphedStep, eager_capture
from resnetlab.train.history import read_history
from resnetlab.train.loop import TrainingStopped, fit
from resnetlab.train.optim import use_tensor_lr

STARTED = time.perf_counter()


class Session:
    def __init__(self, out: Path, budget: float) -> None:
        self.out, self.budget = out, budget
        self.results: dict = {"parts": {}, "errors": {}}

    def log(self, message: str) -> None:
        line = f"[{time.perf_counter() - STARTED:7.1f}s] {message}"
        print(line, flush=True)
        with open(self.out / "session.log", "a") as handle:
            handle.write(line + "\n")

    def left(self) -> float:
        return self.budget - (time.perf_counter() - STARTED)

    def save(self) -> None:
        path = self.out / "results.json"
        path.with_suffix(".tmp").write_text(json.dumps(self.results, indent=1, default=str))
        path.with_suffix(".tmp").replace(path)

    def part(self, name: str, needs: float, run) -> None:
        """Run one part if ``needs`` seconds are left; record its result or its error, and its duration."""
        if self.left() < needs:
            self.log(f"SKIP {name}: needs ~{needs:.0f}s, {self.left():.0f}s left")
            self.results["parts"][name] = {"skipped": f"needs ~{needs:.0f}s, {self.left():.0f}s left"}
            self.save()
            return
        self.log(f"START {name} ({self.left():.0f}s left)")
        start = time.perf_counter()
        try:
            self.results[name] = run()
        except Exception as error:  # noqa: BLE001 - one part failing must not lose the others
            self.results["errors"][name] = traceback.format_exc()
            self.log(f"ERROR {name}: {type(error).__name__}: {error}")
        self.results["parts"][name] = {"seconds": round(time.perf_counter() - start, 2)}
        self.log(f"END {name} in {time.perf_counter() - start:.1f}s")
        self.save()


def cuda_tests(timeout: float = 240) -> dict:
    """tests/train/test_cuda.py on this machine (skipped there without a GPU); the outcome and pytest's summary."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    done = subprocess.run([sys.executable, "-m", "pytest", "tests/train/test_cuda.py", "-q", "-rA", "-p",
                           "no:cacheprovider"], cwd=root, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    lines = (done.stdout + done.stderr).strip().splitlines()
    return {"passed": done.returncode == 0, "returncode": done.returncode, "summary": lines[-1] if lines else "",
            "tail": lines[-40:]}


def environment(device: torch.device) -> dict:
    info = describe_environment(device)
    try:
        info["nvidia_smi"] = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        info["nvidia_smi"] = ""
    return info


def throughput(s: Session, device: torch.device, models: list[str], steps: int, batches: list[int]) -> list[dict]:
    """Baseline (batch 128, as the issue defines it) and resnetlab (eager, graphed; several batches)."""
    baseline = load_baseline(DEFAULT_BASELINE)
    rows = []

    def add(result) -> None:
        rows.append(result.to_dict())
        s.log(f"  {result.pipeline:<10} {result.mode:<5} {result.model:<12} b{result.batch_size:<5} "
              f"{result.images_per_sec:>10,.0f} img/s  warm {result.warmup_seconds:.1f}s  "
              f"peak {result.peak_memory_mib:,.0f} MiB  {result.settings}")

    config = bench_config(device)
    for name in models:
        add(baseline.train_throughput(name, batches[0], str(device), steps=max(10, steps // 3), warmup=5))
        add(baseline.inference_throughput(name, batches[1], str(device), steps=max(10, steps // 3), warmup=5))
        for batch in (batches if name == models[0] else batches[1:2]):
            for graphs in ("off", "on"):
                if graphs == "on" and device.type != "cuda":
                    continue
                add(bench_train(name, batch, device, steps=steps, warmup=10,
                                config=replace(config, cuda_graphs=graphs)))
        add(bench_inference(name, batches[1], device, steps=steps, warmup=10, config=config))
        if name == models[0]:
            add(bench_inference(name, batches[1], device, steps=steps, warmup=10, config=config, fold_bn=False))
    return rows


def compiled_throughput(s: Session, device: torch.device, name: str, steps: int, batch: int = 512,
                        **inductor_options) -> list[dict]:
    """torch.compile'd model inside the replayed step (``inductor_options``: torch._inductor.config to patch)."""
    import torch._dynamo
    import torch._inductor.config

    graphs = "on" if device.type == "cuda" else "off"
    config = replace(bench_config(device), compile=True, cuda_graphs=graphs)
    torch._dynamo.reset()
    with torch._inductor.config.patch(**inductor_options):
        result = bench_train(name, batch, device, steps=steps, warmup=10, config=config)
    s.log(f"  compiled {name} b{batch} graphs={graphs} {inductor_options or ''}: "
          f"{result.images_per_sec:,.0f} img/s, warm-up (compilation) {result.warmup_seconds:.1f}s")
    return [{**result.to_dict(), "inductor_options": inductor_options}]


def norm_precision_probe(s: Session, device: torch.device, batch: int, steps: int) -> list[dict]:
    """Replayed ResNet-20 steps under settings resnetlab does not offer, to see what its BatchNorm kernels cost.

    PyTorch runs bf16 BatchNorm in its own channels-last kernels (~0.7 TB/s in the H200 profile) and fp16 or fp32
    BatchNorm in cuDNN. Variants: bf16 (resnetlab's setting, the reference), fp16 autocast (speed only: no loss
    scaling), bf16 with each BN computed in fp32, and both precisions in NCHW. Fixed random batch, no augmentation.
    """
    variants = [("bf16 channels_last", torch.bfloat16, False, True), ("fp16 channels_last", torch.float16, False, True),
                ("bf16 + fp32 BN channels_last", torch.bfloat16, True, True), ("bf16 NCHW", torch.bfloat16, False, False),
                ("fp16 NCHW", torch.float16, False, False)]
    rows = []
    for label, dtype, fp32_norm, channels_last in variants:
        torch.manual_seed(0)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        model = create_model("resnet20").to(device, memory_format=memory_format)
        if fp32_norm:
            for module in model.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.register_forward_pre_hook(lambda _module, args: (args[0].float(),))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4,
                                    fused=True)
        use_tensor_lr(optimizer, device)
        images = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=memory_format)
        labels = torch.randint(0, 10, (batch,), device=device)

        def step(x: torch.Tensor, y: torch.Tensor, model=model, optimizer=optimizer, dtype=dtype):
            with torch.autocast(device.type, dtype=dtype, cache_enabled=False, enabled=device.type == "cuda"):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return loss.detach(), (logits.argmax(dim=1) == y).sum()

        capture = {} if device.type == "cuda" else {"capture": eager_capture}
        graphed = GraphedStep(step, model, optimizer, strict=True, log=s.log, **capture)
        warm, seconds = timed(partial(graphed, images, labels), steps, 10, device)
        rate = steps * batch / seconds
        s.log(f"  probe resnet20 b{batch} {label}: {rate:,.0f} img/s")
        rows.append({"variant": label, "batch_size": batch, "images_per_sec": rate, "warmup_seconds": warm})
    return rows


def compiled_profile(s: Session, device: torch.device, name: str, batch: int) -> dict:
    """Kernel time of the compiled step (not replayed, so each kernel is seen): what is left after fusion."""
    result = profile_train_step(name, batch, device, steps=10, warmup=5, rows=30,
                                config=replace(bench_config(device), compile=True))
    s.log(f"  compiled profile {result.summary()}")
    (s.out / "profile-compiled.txt").write_text(f"== compiled: {result.summary()} ==\n{result.table}")
    return {key: value for key, value in asdict(result).items() if key != "table"}


def profile(s: Session, device: torch.device, models: list[str]) -> dict:
    """Eager step: device kernel time per step against wall time per step (how launch-bound it is)."""
    summary, tables = {}, []
    for name in models:
        result = profile_train_step(name, 512, device, steps=10, warmup=5, rows=25)
        s.log(f"  profile {result.summary()}")
        summary[name] = {key: value for key, value in asdict(result).items() if key != "table"}
        tables.append(f"== {result.summary()} ==\n{result.table}")
    (s.out / "profile.txt").write_text("\n\n".join(tables))
    return summary


def deep(s: Session, device: torch.device, models: list[str], batch: int, steps: int) -> list[dict]:
    rows = []
    for name in models:
        for checkpointing in (0, -1, 4):
            config = replace(bench_config(device), cuda_graphs="off", activation_checkpointing=checkpointing)
            result = bench_train(name, batch, device, steps=steps, warmup=2, config=config)
            s.log(f"  {name} b{batch} checkpointing={checkpointing}: {result.images_per_sec:,.0f} img/s, "
                  f"peak {result.peak_memory_mib:,.0f} MiB")
            rows.append(result.to_dict())
    return rows


def recipe_run(s: Session, recipe: str, data: str, run_dir: Path, overrides: dict) -> dict:
    config = resolve_config(recipe, overrides={"data": data, "tensorboard": False, **overrides})
    start = time.perf_counter()
    results = fit(config, run_dir, resume=False, log=s.log, show_progress=False)
    wall = time.perf_counter() - start
    history = read_history(run_dir)
    rows = [row for row in history if not row.get("partial")]
    training_seconds = sum(row["epoch_seconds"] for row in rows)
    s.log(f"  {recipe} {overrides}: final test acc {rows[-1].get('test_acc', float('nan')):.4f}, "
          f"training {training_seconds:.1f}s, wall {wall:.1f}s")
    return {"config": config.to_dict(), "results": results, "history": history,
            "training_seconds": training_seconds, "wall_seconds": wall}


def graphed_deep(s: Session, device: torch.device, models: list[str], batch: int, steps: int) -> list[dict]:
    """The very deep nets without checkpointing, eager against the replayed step (launch-bound at 1,200 layers)."""
    rows = []
    for name in models:
        result = bench_train(name, batch, device, steps=steps, warmup=3,
                             config=replace(bench_config(device), cuda_graphs="on"))
        s.log(f"  {name} b{batch} graphs=on: {result.images_per_sec:,.0f} img/s, peak {result.peak_memory_mib:,.0f} MiB")
        rows.append(result.to_dict())
    return rows


def resume_check(s: Session, runs: Path) -> dict:
    """A graphed 2-epoch run stopped (SIGTERM) early in epoch 2 and resumed, next to the same run uninterrupted."""
    config = resolve_config("fast", overrides={"data": "synthetic", "tensorboard": False, "epochs": 2})

    def stop_after_first_epoch(line: str) -> None:
        s.log(line)
        if line.startswith("epoch 1/"):
            os.kill(os.getpid(), signal.SIGTERM)

    try:
        fit(config, runs / "resumed", resume=False, log=stop_after_first_epoch, show_progress=False)
    except TrainingStopped as stopped:
        s.log(f"  stopped at step {stopped.step}")
    fit(config, runs / "resumed", resume=True, log=s.log, show_progress=False)
    fit(config, runs / "straight", resume=False, log=s.log, show_progress=False)
    resumed, straight = read_history(runs / "resumed"), read_history(runs / "straight")
    keys = ("epoch", "step", "train_loss", "test_loss", "test_acc")
    return {"resumed": [{k: row.get(k) for k in keys} for row in resumed],
            "straight": [{k: row.get(k) for k in keys} for row in straight]}


def follow_up(s: Session, device: torch.device, runs: Path) -> None:
    """The second call: compiled + graphed ResNet-56/110 against the baseline, graphed very deep nets, resume."""
    baseline = load_baseline(DEFAULT_BASELINE)

    def same_run_rows() -> list[dict]:
        rows = []
        for name in ("resnet20", "resnet56", "resnet110"):
            for result in (baseline.train_throughput(name, 128, str(device), steps=20, warmup=5),
                           bench_train(name, 512, device, steps=60, warmup=10,
                                       config=replace(bench_config(device), cuda_graphs="on"))):
                s.log(f"  {result.pipeline} {name} b{result.batch_size}: {result.images_per_sec:,.0f} img/s")
                rows.append(result.to_dict())
        return rows

    s.part("throughput", 30, same_run_rows)
    s.part("compiled_resnet56", 60, lambda: compiled_throughput(s, device, "resnet56", 60))
    s.part("graphed_deep", 40, lambda: graphed_deep(s, device, ["resnet1202", "resnet1001v2"], 128, 10))
    s.part("resume", 30, lambda: resume_check(s, runs))
    s.part("compiled_resnet110", 80, lambda: compiled_throughput(s, device, "resnet110", 60))


def fast_epochs_for(rate: float | None, smoke: bool) -> int:
    """The fast recipe's epochs (57), fewer where the measured rate would not fit them into 28 s of steps: its
    target is time to accuracy (at most 30 s)."""
    if smoke:
        return 1
    return min(57, math.floor(28 * rate / 50_000)) if rate else 40


def measured_rate(s: Session, model: str, batch: int) -> float | None:
    """resnetlab's training img/s of ``model`` at ``batch`` from the throughput part: the graphed row, else eager."""
    rows = [row for row in s.results.get("throughput", []) if row["pipeline"] == "resnetlab"
            and row["mode"] == "train" and row["model"] == model and row["batch_size"] == batch]
    rows.sort(key=lambda row: "graphs=on" not in row["settings"])
    return rows[0]["images_per_sec"] if rows else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="")
    parser.add_argument("--out", required=True)
    parser.add_argument("--budget", type=float, default=540)
    parser.add_argument("--plan", choices=["full", "follow-up", "speed"], default="full")
    parser.add_argument("--smoke", action="store_true", help="the plan's parts, tiny, on the CPU")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    s = Session(out, args.budget)
    smoke = args.smoke
    device = torch.device("cuda" if torch.cuda.is_available() and not smoke else "cpu")
    runs = Path("/tmp/resnetlab-gpu-runs")
    data = args.data if not smoke else "synthetic"
    models = ["resnet8", "resnet14", "resnet20"] if smoke else ["resnet20", "resnet56", "resnet110"]
    steps = 3 if smoke else 60
    batches = [16, 32, 64] if smoke else [128, 512, 1024]

    s.part("environment", 0, lambda: environment(device))
    s.part("cuda_tests", 60, cuda_tests)
    if args.plan == "follow-up":
        follow_up(s, device, runs)
        s.log("done")
        s.save()
        return
    if not smoke:
        s.part("data", 30, lambda: {"train": list(load_dataset(data).train.images.shape)})
    s.part("throughput", 30, lambda: throughput(s, device, models, steps, batches))
    if args.plan == "full":
        s.part("profile", 20, lambda: profile(s, device, models))
        deep_models = ["resnet14", "resnet11v2"] if smoke else ["resnet1202", "resnet1001v2"]
        s.part("deep", 40, lambda: deep(s, device, deep_models, 8 if smoke else 128, 2 if smoke else 5))

    fast_epochs = fast_epochs_for(measured_rate(s, models[0], batches[1]), smoke)
    s.results["fast_epochs"] = fast_epochs
    fast_overrides = {"epochs": fast_epochs, "checkpoint_every": 1000}
    if smoke:
        fast_overrides.update(model="resnet8", batch_size=64)
    for seed in (0, 1, 2):
        s.part(f"fast_seed{seed}", 45 if not smoke else 5,
               lambda seed=seed: recipe_run(s, "fast", data, runs / f"fast-{seed}", {**fast_overrides, "seed": seed}))

    s.part("compiled", 90 if not smoke else 5, lambda: compiled_throughput(s, device, models[0], steps, batches[1]))
    if args.plan == "speed":
        big = batches[2]
        s.part("compiled_b1024", 35, lambda: compiled_throughput(s, device, models[0], steps, big))
        s.part("compiled_resnet56", 70, lambda: compiled_throughput(s, device, models[1], steps))
        s.part("compiled_resnet110", 100, lambda: compiled_throughput(s, device, models[2], steps))
        s.part("probe", 30, lambda: norm_precision_probe(s, device, batches[1], steps))
        s.part("fast_b1024", 45 if not smoke else 5,
               lambda: recipe_run(s, "fast", data, runs / "fast-b1024",
                                  {**fast_overrides, "batch_size": 2 * fast_overrides.get("batch_size", 512),
                                   "lr": 0.8, "seed": 0}))
        s.part("compiled_profile", 35, lambda: compiled_profile(s, device, models[0], big))
        s.part("compiled_tuned", 60, lambda: compiled_throughput(s, device, models[0], steps, big,
                                                                 coordinate_descent_tuning=True))
    rate128 = measured_rate(s, models[0], batches[0])
    paper_overrides = {"iterations": 40, "model": "resnet8", "val_split": 256} if smoke else {}
    paper_estimate = 10 if smoke else (64_000 * 128 / rate128 + 182 * 0.15) if rate128 else 10_000
    s.results["paper_estimate_seconds"] = paper_estimate
    s.part("paper", paper_estimate * 1.15, lambda: recipe_run(s, "paper", data, runs / "paper", paper_overrides))
    s.log("done")
    s.save()


if __name__ == "__main__":
    sys.exit(main())
