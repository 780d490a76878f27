"""Kill safety of ``resnetlab train``: SIGKILL at random moments, start again, repeat; nothing may change.

    python benchmarks/kill_harness.py --trials 25            # results: benchmarks/README.md, "Kill harness"

A trial trains one tiny run (resnet8 on a generated 3-class image folder, CPU, ``--deterministic``, a
checkpoint every epoch) in a fresh run directory with ``python -m resnetlab train``, kills the process with
SIGKILL at a random (seeded) moment and starts the same command again -- which resumes from the last
checkpoint -- until a start finishes by itself. After every kill, before the next start:

- every complete checkpoint in the run directory loads (a torn one counts as a loss);
- once a checkpoint has been written, the run directory holds a loadable one, and its step is not behind the
  last one seen (a loss otherwise).

At the end the final weights and optimizer state equal those of an uninterrupted reference run bit for bit, and
so do the history's losses and accuracies (a mismatch otherwise); no temporary directory and no lock is left.

Kills land in start-up, data loading, setup, training, evaluation and checkpoint writes (see
``kill_at_random_moment``). A checkpoint of this tiny model is written in milliseconds, so by default the child
stretches every write (``--write-delay`` seconds): each file is first left half-written on disk, as a kill
mid-write would leave it, then completed, and the renames into place wait too. The stretching changes timing
only, never what is written; ``--write-delay 0`` runs the plain ``python -m resnetlab train``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIME_KEYS = ("epoch_seconds", "wall_seconds", "images_per_sec")


@dataclass
class Settings:
    """The tiny run every trial repeats; sizes chosen so a run is a few seconds on two busy CPU cores."""

    epochs: int = 4
    train_per_class: int = 8  # 3 classes: 24 training images, 6 held out -> 3 steps of 6 per epoch
    test_per_class: int = 4
    image_size: int = 16
    batch_size: int = 6
    val_split: int = 6
    write_delay: float = 0.1  # seconds each checkpoint write is stretched by in the child (0: plain CLI)
    max_kills: int = 4  # kills per trial; the start after the last one runs to the end
    threads: int = 1  # intra-op threads per child: spinning OpenMP threads make a busy shared machine crawl


@dataclass
class Summary:
    """The counts of a harness run; ``problems`` says what went wrong, one entry per finding."""

    trials: int = 0
    kills: int = 0
    kills_by_phase: dict[str, int] = field(default_factory=dict)
    starts: int = 0
    stale_lock_takeovers: int = 0
    losses: int = 0  # kills after which a checkpoint did not load, or the newest one was gone or older
    torn: int = 0  # complete-looking checkpoints that did not load (each also makes its kill a loss)
    mismatches: int = 0  # trials whose final weights / optimizer state / history differ from the reference
    errors: int = 0  # starts that failed by themselves
    problems: list[str] = field(default_factory=list)
    reference_seconds: float = 0.0
    reference_writes: int = 0  # checkpoint writes of the uninterrupted run
    seconds: float = 0.0


def write_dataset(root: Path, settings: Settings) -> Path:
    """A learnable 3-class image folder: each class has its own mean colour, plus noise (PNG, 32x32)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", settings.train_per_class), ("test", settings.test_per_class)):
        for label, name in enumerate(("cat", "dog", "ship")):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                base = np.zeros((32, 32, 3))
                base[..., label] = 180
                pixels = np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{index:04d}.png")
    return root


def train_command(data: Path, run_dir: Path, settings: Settings) -> list[str]:
    args = ["train", "--data", str(data), "--out", str(run_dir), "--model", "resnet8", "--epochs",
            str(settings.epochs), "--batch-size", str(settings.batch_size), "--val-split", str(settings.val_split),
            "--image-size", str(settings.image_size), "--device", "cpu", "--deterministic", "--quiet",
            "--log-every", "1", "--set", "checkpoint_every=1", "--set", "keep_checkpoints=2",
            "--set", "tensorboard=false"]
    if settings.write_delay > 0:
        return [sys.executable, str(Path(__file__).resolve()), "--child", str(settings.write_delay), *args]
    return [sys.executable, "-m", "resnetlab", *args]


def child_environment(cache: Path, settings: Settings) -> dict[str, str]:
    env = {**os.environ, "RESNETLAB_CACHE": str(cache), "PYTHONUNBUFFERED": "1",
           "OMP_NUM_THREADS": str(settings.threads)}
    env.pop("RESNETLAB_DATA", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    return env


def start(command: list[str], env: dict[str, str], log_file: Path) -> subprocess.Popen:
    with open(log_file, "ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)


def phase_of(run_dir: Path) -> str:
    """Where a kill landed, judged from what it left in the run directory."""
    folder = run_dir / "checkpoints"
    names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
    if any(n.startswith(".tmp-") for n in names):
        return "checkpoint write"
    if any(n.startswith((".old-", ".del-")) for n in names):
        return "checkpoint replace/prune"
    if not any(n.startswith(("step-", "best-")) for n in names):
        return "in fit, before the first checkpoint"
    return "training/evaluation"


def checkpoint_steps(run_dir: Path) -> tuple[list[int], list[str]]:
    """(steps of the loadable step- checkpoints, problems with any checkpoint that does not load)."""
    from resnetlab.errors import CheckpointError
    from resnetlab.train.checkpoint import list_checkpoints, load_checkpoint

    steps, problems = [], []
    for kind in ("step", "best"):
        for path in list_checkpoints(run_dir, kind):
            try:
                checkpoint = load_checkpoint(path)
            except CheckpointError as error:
                problems.append(f"torn checkpoint {path}: {error}")
                continue
            if kind == "step":
                steps.append(checkpoint.step)
    return steps, problems


def final_state(run_dir: Path) -> dict:
    from resnetlab.train.checkpoint import list_checkpoints, load_checkpoint
    from resnetlab.train.history import read_history

    checkpoint = load_checkpoint(list_checkpoints(run_dir)[0])
    history = [{k: v for k, v in row.items() if k not in TIME_KEYS} for row in read_history(run_dir)]
    return {"step": checkpoint.step, "weights": checkpoint.model_state,
            "optimizer": checkpoint.state["optimizer"]["state"], "history": history}


def differences(reference: dict, result: dict) -> list[str]:
    import torch

    found = []
    if reference["step"] != result["step"]:
        found.append(f"final step {result['step']} != {reference['step']}")
    for part in ("weights", "optimizer"):
        ref, got = reference[part], result[part]
        if ref.keys() != got.keys():
            found.append(f"{part}: different keys")
            continue
        for key in ref:
            a, b = ref[key], got[key]
            same = (all(torch.equal(a[k], b[k]) for k in a) if isinstance(a, dict) else torch.equal(a, b))
            if not same:
                found.append(f"{part}[{key}] differs")
    if reference["history"] != result["history"]:
        found.append("history differs")
    return found


def locked_by(run_dir: Path, process: subprocess.Popen) -> bool:
    """Whether the process has taken the run directory's lock, i.e. has got past start-up into ``fit``."""
    try:
        return json.loads((run_dir / ".lock").read_text())["pid"] == process.pid
    except (OSError, ValueError, KeyError):
        return False


def wait_for_lock(run_dir: Path, process: subprocess.Popen) -> float:
    """Seconds until the process holds the lock (or exits)."""
    began = time.monotonic()
    while process.poll() is None and not locked_by(run_dir, process):
        time.sleep(0.01)
    return time.monotonic() - began


@dataclass
class Timing:
    """The reference run's timeline, in seconds, and its number of checkpoint writes."""

    startup: float  # from the start of the process until it holds the lock (imports, argument checks)
    first_write: float  # from then until its first checkpoint write begins (setup, data, the first epoch)
    writes: int
    total: float  # the whole run


def new_writes(run_dir: Path, seen: set[str]) -> int:
    """How many checkpoint writes began since the last call: each has its own ``.tmp-*`` directory."""
    folder = run_dir / "checkpoints"
    names = {p.name for p in folder.glob(".tmp-*")} if folder.is_dir() else set()
    fresh = names - seen
    seen |= fresh
    return len(fresh)


def run_reference(data: Path, work: Path, settings: Settings, env: dict[str, str]) -> tuple[dict, Timing]:
    """The uninterrupted run: its final state and timeline."""
    run_dir = work / "reference"
    process = start(train_command(data, run_dir, settings), env, work / "reference.log")
    startup = wait_for_lock(run_dir, process)
    began, first, seen = time.monotonic(), None, set()
    while process.poll() is None:
        if new_writes(run_dir, seen) and first is None:
            first = time.monotonic() - began
        time.sleep(0.005)
    if process.returncode != 0:
        raise RuntimeError(f"the reference run failed:\n{(work / 'reference.log').read_text()[-3000:]}")
    in_fit = time.monotonic() - began
    return final_state(run_dir), Timing(startup, first or in_fit, max(1, len(seen)), startup + in_fit)


def kill_at_random_moment(process: subprocess.Popen, run_dir: Path, rng: random.Random, timing: Timing,
                          write_window: float) -> None:
    """SIGKILL the process at a random moment (unless it finishes first):

    - a fifth of the kills at a uniform time in the reference's start-up;
    - a fifth at a uniform time between taking the lock and the reference's first checkpoint write;
    - the rest at a uniform time in the ``write_window`` seconds after the k-th checkpoint write of this start
      began, k uniform over the reference's writes: inside that write, or in the steps that follow it.

    Clocks start at events of this start (its lock, its writes), not at its launch, because start-up time
    varies with the machine's load. A resumed run has fewer writes left, so high draws of k let it finish.
    """
    draw = rng.random()
    if draw < 0.2:
        delay = rng.uniform(0.0, timing.startup)
    elif draw < 0.4:
        wait_for_lock(run_dir, process)
        delay = rng.uniform(0.0, timing.first_write)
    else:
        target, seen, count = rng.randint(1, timing.writes), set(), 0
        while process.poll() is None and count < target:
            count += new_writes(run_dir, seen)
            time.sleep(0.005)
        delay = rng.uniform(0.0, write_window)
    try:
        process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)


@dataclass
class Bench:
    """What every trial shares: the data, the children's environment, the reference run."""

    settings: Settings
    work: Path
    data: Path
    env: dict[str, str]
    reference: dict
    timing: Timing

    def command(self, run_dir: Path) -> list[str]:
        return train_command(self.data, run_dir, self.settings)


def prepare(work: Path, settings: Settings) -> Bench:
    """Write the dataset into ``work`` and train the uninterrupted reference run there."""
    work.mkdir(parents=True, exist_ok=True)
    data = write_dataset(work / "data", settings)
    env = child_environment(work / "cache", settings)
    reference, timing = run_reference(data, work, settings, env)
    return Bench(settings, work, data, env, reference, timing)


def check_after_kill(run_dir: Path, before: int) -> tuple[int, list[str]]:
    """(newest loadable step, problems) of a killed run's directory; ``before``: the newest step seen so far,
    -1 while no checkpoint was written."""
    steps, problems = checkpoint_steps(run_dir)
    newest = max(steps, default=-1)
    has_best = any((run_dir / "checkpoints").glob("best-*"))
    if before >= 0 and newest < before:
        problems.append(f"newest loadable checkpoint is step {newest}, was step {before}")
    if before >= 0 and newest < 0 and not has_best:
        problems.append("no loadable checkpoint left")
    return max(newest, before), problems


def check_finished(bench: Bench, run_dir: Path) -> list[str]:
    """How a finished run differs from the reference, and what it left behind."""
    found = differences(bench.reference, final_state(run_dir))
    leftovers = [p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")]
    if (run_dir / ".lock").exists():
        leftovers.append(".lock")
    if leftovers:
        found.append(f"left behind: {leftovers}")
    return found


def run_trial(bench: Bench, index: int, rng: random.Random, summary: Summary) -> None:
    """Start, kill, start again... until a start finishes by itself; then compare with the reference."""
    run_dir = bench.work / f"trial-{index:03d}"
    log_file = bench.work / f"trial-{index:03d}.log"
    newest, kills = -1, 0
    while True:
        summary.starts += 1
        process = start(bench.command(run_dir), bench.env, log_file)
        if kills < bench.settings.max_kills:
            kill_at_random_moment(process, run_dir, rng, bench.timing, 4 * bench.settings.write_delay + 0.2)
        process.wait()  # reaped: its pid is dead, so its lock is stale
        if process.returncode != -signal.SIGKILL:
            break
        kills += 1
        summary.kills += 1
        phase = phase_of(run_dir) if locked_by(run_dir, process) else "start-up, before fit"
        summary.kills_by_phase[phase] = summary.kills_by_phase.get(phase, 0) + 1
        newest, problems = check_after_kill(run_dir, newest)
        summary.torn += sum(p.startswith("torn") for p in problems)
        if problems:
            summary.losses += 1
            summary.problems += [f"trial {index}, kill {kills} ({phase}): {p}" for p in problems]
    text = log_file.read_text()
    summary.stale_lock_takeovers += text.count("taking over the")
    if process.returncode != 0:
        summary.errors += 1
        summary.problems.append(f"trial {index}: exit code {process.returncode}:\n{text[-2000:]}")
        return
    found = check_finished(bench, run_dir)
    if found:
        summary.mismatches += 1
        summary.problems.append(f"trial {index}: " + "; ".join(found))


def run_harness(trials: int, seed: int = 0, settings: Settings | None = None, work: Path | None = None,
                progress: bool = False) -> Summary:
    """Run the reference and ``trials`` killed-and-resumed runs; the returned Summary holds the counts."""
    settings = settings or Settings()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kill-harness-") as scratch:
        bench = prepare(Path(work or scratch), settings)
        summary = Summary(reference_seconds=round(bench.timing.total, 2), reference_writes=bench.timing.writes)
        rng = random.Random(seed)
        for index in range(trials):
            run_trial(bench, index, rng, summary)
            summary.trials += 1
            if progress:
                print(f"trial {index + 1}/{trials}: kills {summary.kills}, losses {summary.losses}, torn "
                      f"{summary.torn}, mismatches {summary.mismatches}, errors {summary.errors}", flush=True)
    summary.seconds = round(time.monotonic() - began, 1)
    return summary


def stretch_checkpoint_writes(delay: float) -> None:
    """In the child: leave each checkpoint file half-written for ``delay`` s, then whole; delay the renames."""
    import torch

    from resnetlab.train import checkpoint

    def stretched(write):
        def wrapper(obj, path, *args, **kwargs):
            write(obj, path, *args, **kwargs)
            whole = Path(path).read_bytes()
            Path(path).write_bytes(whole[: len(whole) // 2])
            time.sleep(delay)
            Path(path).write_bytes(whole)
        return wrapper

    fsync_dir = checkpoint.fsync_tree

    def slow_fsync_dir(path):
        time.sleep(delay)
        fsync_dir(path)

    checkpoint.save_file = stretched(checkpoint.save_file)
    torch.save = stretched(torch.save)
    checkpoint.fsync_tree = slow_fsync_dir


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:  # the process under test
        stretch_checkpoint_writes(float(argv[1]))
        from resnetlab.cli import main as cli_main
        return cli_main(argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill delays")
    parser.add_argument("--max-kills", type=int, default=Settings.max_kills, help="kills per trial")
    parser.add_argument("--write-delay", type=float, default=Settings.write_delay,
                        help="seconds each checkpoint write is stretched by (0: plain `python -m resnetlab`)")
    parser.add_argument("--work", type=Path, help="keep the run directories and logs here")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args(argv)
    settings = Settings(max_kills=args.max_kills, write_delay=args.write_delay)
    summary = run_harness(args.trials, args.seed, settings, args.work, progress=True)
    report = {**asdict(summary), "settings": asdict(settings), "seed": args.seed,
              "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    ok = not (summary.losses or summary.torn or summary.mismatches or summary.errors)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
