"""The papers' evidence at the papers' scale, in slices of at most 9 minutes of one GPU.

One command, run again and again: each run (a *slice*) unpacks what the last one left (``--state``), trains the
next runs of the plan concurrently (``resnetlab.train.concurrent``: each run exactly what it would be alone) until
its time is up, stops every run with a checkpoint, and packs what the next slice needs into at most 8 tar files of
at most 16 MiB in ``--out``, beside the results so far. The plan, in order (DRL = Deep Residual Learning, IM =
Identity Mappings), every run the ``paper`` recipe at 64k iterations, seed 0 unless said:

  (i)   fig6:   plain-20, plain-56, ResNet-20, ResNet-56 (the README's figure, DRL Figure 6)
  (ii)  table6: depths 20, 32, 44, 56, 110, plain and residual (DRL Table 6)
  (iii) fig7:   layer responses of plain-20/56 and ResNet-20/56/110 (DRL Figure 7)
  (iv)  im:     ResNet-164 (pre-activation, bottleneck) beside ResNet-110 (IM Table 3)
  (v)   seeds:  ResNet-20 and ResNet-56 with seeds 0, 1, 2 (mean ± std), if time is left

The experiments are resnetlab's own (``experiments/degradation.py``, ``responses.py``, ``comparison.py``): all
runs live in one pool, ``WORK/runs``, which every experiment directory links as its ``runs``, so a run is trained
once and every experiment that needs it finds it finished. Runs are trained in *waves*: the next unfinished runs in
plan order, as many as keep the packed state under ``STATE_BUDGET`` (what the next slice gets back must travel
with the data and the repository). A finished net of seed 0 is published (``resnetlab publish``) into
``weights-*.tar`` in the slice that finishes it; its checkpoint is then dropped from the state, once Figure 7 no
longer needs it. The first slice measures the baseline of the concurrency ratio in the same run: each model's
graphed training step and evaluation pass alone (``plan.json``: ``baseline``, ``waves``).

    PYTHONPATH=src python benchmarks/evidence_plan.py --data cifar10-jpeg.tar.xz --state STATE --out OUT
    PYTHONPATH=src python benchmarks/evidence_plan.py --smoke --out /tmp/s1            # tiny: seconds, any device
    PYTHONPATH=src python benchmarks/evidence_plan.py --smoke --state /tmp/s1 --out /tmp/s2   # the next slice
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

import torch
from evidence_pack import STATE_BUDGET, MiB, sized, state_members, unpack, write_packs
from evidence_stages import Log, Stage, base_config, plan_stages, state_bytes

from resnetlab.experiments.report import build_report
from resnetlab.experiments.sweep import RunSpec, SweepStopped, is_done, run_sweep
from resnetlab.files import write_json
from resnetlab.train.config import TrainConfig
from resnetlab.train.loop import NonFiniteLoss

RESERVE = 50.0  # seconds kept at the end of a slice: stop every run, publish, write results, pack
JPEG_NOTE = ("CIFAR-10, the JPEG copy (all 60,000 images as JPEG quality 75 with 4:2:0 chroma subsampling, so "
             "pixels differ from the official release)")
PUBLISH_TAG = "cifar10"


class Slice:
    """One invocation: its clock, its log and the plan's record (``plan.json``, carried from slice to slice)."""

    def __init__(self, work: Path, budget: float, log: Log) -> None:
        self.work, self.budget, self.print = work, budget, log
        self.started = time.perf_counter()
        self.record_path = work / "plan.json"
        self.record = json.loads(self.record_path.read_text()) if self.record_path.exists() else {
            "slices": [], "waves": [], "stages_done": [], "published": {}, "baseline": {}}
        self.record["slices"].append({"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "budget": budget})
        self.out_of_time = threading.Event()
        self.test_images = 10_000
        self.failed: set[str] = set()  # runs whose loss became non-finite in this slice: not retried in it

    def log(self, message: str) -> None:
        line = f"[{time.perf_counter() - self.started:6.1f}s] {message}"
        self.print(line)
        with open(self.work / "plan.log", "a") as handle:
            handle.write(line + "\n")

    def left(self) -> float:
        return self.budget - RESERVE - (time.perf_counter() - self.started)

    def save(self) -> None:
        write_json(self.record_path, self.record)


def run_dir(work: Path, spec: RunSpec) -> Path:
    return work / "runs" / spec.name


def link_runs(work: Path, stages: list[Stage]) -> None:
    """Every experiment directory sees the one pool of runs as its ``runs``."""
    (work / "runs").mkdir(parents=True, exist_ok=True)
    for stage in stages:
        link = work / stage.name / "runs"
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(Path("..") / "runs", target_is_directory=True)


def measure_baseline(s: Slice, models: list[str], device: torch.device, smoke: bool) -> dict:
    """Each model alone, the graphed training step at batch 128 and the evaluation pass (fp32/bf16 as the loop
    runs it): the sequential estimate every wave's concurrent wall time is compared with."""
    from resnetlab.bench import bench_config, bench_inference, bench_train

    graphs = "on" if device.type == "cuda" else "off"
    steps, warmup = (2, 1) if smoke else (200, 30)
    rows = {}
    for model in models:
        train = bench_train(model, 128 if not smoke else 16, device, steps=steps, warmup=warmup,
                            config=dataclasses.replace(bench_config(device), cuda_graphs=graphs,
                                                       augmentation="crop_flip"))
        infer = bench_inference(model, 500 if not smoke else 16, device, steps=max(2, steps // 10), warmup=warmup,
                                config=bench_config(device), fold_bn=False)
        rows[model] = {"train_images_per_sec": train.images_per_sec, "eval_images_per_sec": infer.images_per_sec,
                       "settings": train.settings}
        s.log(f"baseline {model}: train {train.images_per_sec:,.0f} img/s ({train.settings}), "
              f"eval {infer.images_per_sec:,.0f} img/s")
    return {"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "",
            "models": rows}


def sequential_estimate(baseline: dict, runs: list[dict]) -> float | None:
    """Seconds the wave's training steps and evaluations would take one run after another, from the baseline."""
    total = 0.0
    for run in runs:
        rates = baseline.get("models", {}).get(run["model"])
        if not rates:
            return None
        total += run["images_trained"] / rates["train_images_per_sec"]
        total += run["images_evaluated"] / rates["eval_images_per_sec"]
    return total


def history_counts(path: Path) -> tuple[int, int]:
    """(steps, evaluations of val and test) a run's history records so far."""
    from resnetlab.train.history import read_history

    rows = read_history(path)
    return (int(rows[-1]["step"]) if rows else 0), len(rows)


def train_wave(s: Slice, base: TrainConfig, wave: list[RunSpec]) -> bool:
    """Train one wave concurrently; returns False when the slice's time ran out (every run checkpointed)."""
    before = {spec.name: history_counts(run_dir(s.work, spec)) for spec in wave}
    started = time.perf_counter()
    s.log(f"wave: {', '.join(spec.name for spec in wave)} ({s.left():.0f}s left)")
    stopped = False
    try:
        run_sweep(s.work, base, wave, log=s.log, show_progress=False, concurrent=len(wave))
    except SweepStopped as stop:
        s.log(f"slice time is up: {stop}")
        stopped = True
    except NonFiniteLoss as error:  # that run stopped alone; the others of the wave trained on
        s.log(f"a run failed: {error}")
        s.failed.update(spec.name for spec in wave if not is_done(run_dir(s.work, spec), spec.config(base)))
    wall = time.perf_counter() - started
    runs = []
    for spec in wave:
        (steps0, evals0), (steps1, evals1) = before[spec.name], history_counts(run_dir(s.work, spec))
        runs.append({"run": spec.name, "model": spec.model, "steps": steps1 - steps0,
                     "images_trained": (steps1 - steps0) * base.batch_size,
                     "images_evaluated": (evals1 - evals0) * (base.val_split + s.test_images)})
    estimate = sequential_estimate(s.record["baseline"], runs)
    s.record["waves"].append({"runs": runs, "wall_seconds": wall, "sequential_estimate_seconds": estimate,
                              "ratio": estimate / wall if estimate and wall else None, "stopped": stopped})
    s.log(f"wave took {wall:.1f}s" + (f"; one after another about {estimate:.1f}s: {estimate / wall:.2f}x"
                                       if estimate else ""))
    s.save()
    return not stopped


def choose_wave(pending: list[RunSpec], kept: int, limit: int) -> list[RunSpec]:
    """The next runs in plan order whose checkpoints fit the state budget beside what is kept (one at least)."""
    wave, used = [], kept
    for spec in {spec.name: spec for spec in pending}.values():
        size = state_bytes(spec.model)
        if wave and (used + size > STATE_BUDGET or len(wave) >= limit):
            break
        wave.append(spec)
        used += size
    return wave


def publish_finished(s: Slice, base: TrainConfig, specs: list[RunSpec], data: str, device: str) -> None:
    from resnetlab.train.publish import publish

    for spec in specs:
        path = run_dir(s.work, spec)
        if spec.seed != 0 or spec.model in s.record["published"] or not is_done(path, spec.config(base)):
            continue
        # replace: a slice killed between publishing and saving its record publishes the net again on rerun
        published = publish(path, PUBLISH_TAG, s.work / "weights", data=data, data_description=JPEG_NOTE,
                            device=device, replace=True, log=s.log)
        s.record["published"][spec.model] = {"file": published.path.name, "sha256": published.sha256,
                                             "slice": len(s.record["slices"]), "packed": False}
        s.save()


def needed_checkpoints(s: Slice, stages: list[Stage], base: TrainConfig, specs: dict[str, RunSpec]) -> set[str]:
    """Finished runs whose final weights a later part still reads: Figure 7's nets until it is measured, and nets
    of seed 0 not yet published."""
    names = set()
    for stage in stages:
        if stage.needs and stage.name not in s.record["stages_done"]:
            names.update(stage.needs)
    names.update(name for name, spec in specs.items() if spec.seed == 0 and spec.model not in s.record["published"])
    return names


def kept_bytes(s: Slice, needed: set[str], specs: dict[str, RunSpec], base: TrainConfig) -> int:
    return sum(state_bytes(specs[name].model, with_optimizer=False) for name in needed
               if name in specs and is_done(s.work / "runs" / name, specs[name].config(base)))


def pack(s: Slice, out: Path, base: TrainConfig, stages: list[Stage], specs: dict[str, RunSpec]) -> list[Path]:
    """state-NN.tar (what the next slice needs), weights-NN.tar (published this slice), results.tar."""
    def finished(name: str) -> bool:
        return name in specs and is_done(s.work / "runs" / name, specs[name].config(base))

    fresh = [Path("weights") / v["file"] for v in s.record["published"].values() if not v["packed"]]
    if fresh:
        fresh.append(Path("weights") / "index.json")
    results = [p.relative_to(s.work) for stage in stages
               for p in sorted((s.work / stage.name).rglob("*")) if p.is_file() and not p.is_symlink()]
    results += [Path(name) for name in ("report.md", "report.html", "plan.json", "plan.log")
                if (s.work / name).exists()]
    for value in s.record["published"].values():
        value["packed"] = True
    s.save()  # before packing: the record that travels says these weights have come back
    needed = needed_checkpoints(s, stages, base, specs)
    written = write_packs(out, s.work, state_members(s.work, finished, needed), sized(s.work, fresh), results)
    total = sum(path.stat().st_size for path in written)
    s.log(f"packed {len(written)} files, {total / MiB:.1f} MiB: " + ", ".join(
        f"{p.name} {p.stat().st_size / MiB:.1f}" for p in written))
    return written


def run_slice(args: argparse.Namespace, log: Log = print) -> int:
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.state and not work.exists():
        work.mkdir(parents=True)
        log(f"unpacked {unpack(Path(args.state), work)} files from {args.state}")
    work.mkdir(parents=True, exist_ok=True)
    s = Slice(work, args.budget, log)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # where the runs train (device = auto)
    data = "synthetic" if args.smoke and not args.data else args.data
    base = base_config(data, args.smoke)
    stages = plan_stages(args.smoke)
    link_runs(work, stages)
    specs = {spec.name: spec for stage in stages for spec in stage.specs}
    command = " ".join(["python", "benchmarks/evidence_plan.py", *sys.argv[1:]])
    arguments = {"command": command}
    s.test_images = 512 if data == "synthetic" else 10_000

    # SIGTERM stops the runs in flight with a checkpoint (resnetlab's own handler, while they train); the alarm at
    # the end of the slice's training time sends it. Outside training it only marks the slice as out of time.
    # Sent again every few seconds, so that runs still setting up when it first comes are stopped too.
    previous_handler = signal.signal(signal.SIGTERM, lambda *_: s.out_of_time.set())
    training_over = threading.Event()

    def stop_at_deadline() -> None:
        if training_over.wait(max(1.0, s.left())):
            return
        s.out_of_time.set()
        while not training_over.is_set():
            os.kill(os.getpid(), signal.SIGTERM)
            training_over.wait(5)

    timer = threading.Thread(target=stop_at_deadline, daemon=True)
    timer.start()
    try:
        if not s.record["baseline"]:
            models = list(dict.fromkeys(spec.model for spec in specs.values()))
            s.record["baseline"] = measure_baseline(s, models, device, args.smoke)
            s.save()
        for stage in stages:
            def unfinished(candidates: list[RunSpec]) -> list[RunSpec]:
                return [spec for spec in candidates if spec.name not in s.failed
                        and not is_done(run_dir(work, spec), spec.config(base))]

            pending = unfinished(stage.specs)
            later = [] if stage.alone else unfinished([spec for other in stages[stages.index(stage) + 1:]
                                                       for spec in other.specs])
            while pending and not s.out_of_time.is_set() and s.left() > 0:
                needed = needed_checkpoints(s, stages, base, specs)
                wave = choose_wave(pending + later, kept_bytes(s, needed, specs, base),
                                   args.concurrent or len(specs))
                finished = train_wave(s, base, wave)
                publish_finished(s, base, list(specs.values()), data, str(device))
                pending, later = unfinished(pending), unfinished(later)
                if not finished:
                    break
            ready = all(is_done(work / "runs" / name, specs[name].config(base)) if name in specs else False
                        for name in stage.needs)
            if pending or not ready or any(spec.name in s.failed for spec in stage.specs):
                break
            if stage.name not in s.record["stages_done"]:
                s.log(f"writing {stage.name}")
                stage.write(work / stage.name, base, arguments, s.log)
                s.record["stages_done"].append(stage.name)
                s.save()
    except Exception:  # noqa: BLE001 - the slice still packs what it has, so the next one can continue
        s.log("ERROR\n" + traceback.format_exc())
    finally:
        training_over.set()
        timer.join()
        signal.signal(signal.SIGTERM, previous_handler)
    done = [work / stage.name for stage in stages if stage.name in s.record["stages_done"]]
    if done:
        build_report(done, work / "report.md")
    remaining = [name for name, spec in specs.items() if not is_done(work / "runs" / name, spec.config(base))]
    s.record["slices"][-1].update(seconds=time.perf_counter() - s.started, remaining_runs=remaining,
                                  stages_done=list(s.record["stages_done"]))
    s.save()
    pack(s, out, base, stages, specs)
    finished_all = not remaining and len(s.record["stages_done"]) == len(stages)
    s.log("plan finished" if finished_all else f"slice ended; {len(remaining)} runs left: run again with "
          f"--state pointing at the files of {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="", help="the dataset (the JPEG CIFAR-10 archive)")
    parser.add_argument("--state", help="folder holding the previous slice's state-*.tar and weights-*.tar")
    parser.add_argument("--out", required=True, help="where this slice's files go (at most 8, 16 MiB each)")
    parser.add_argument("--work", default="runs/evidence-plan", help="working folder (default %(default)s)")
    parser.add_argument("--budget", type=float, default=540, help="seconds this slice may take (default 540)")
    parser.add_argument("--concurrent", type=int, default=0, help="at most this many runs at once (0: all)")
    parser.add_argument("--smoke", action="store_true", help="tiny nets and lengths (seconds; on a GPU too)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.smoke and not args.data:
        parser.error("--data is required (the JPEG CIFAR-10 archive)")
    return run_slice(args)


if __name__ == "__main__":
    sys.exit(main())
