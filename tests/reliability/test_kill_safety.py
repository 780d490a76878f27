"""Kill safety and graceful stops of ``resnetlab train`` as a real subprocess (benchmarks/kill_harness.py).

CI runs three kill trials and one SIGTERM + Ctrl-C sequence against one shared reference run; the slow test runs
the harness's 25 trials. The instants a random kill rarely hits (between the two renames that replace a
checkpoint, in the middle of pruning) are staged: a forked child SIGKILLs itself there.
"""

import importlib.util
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from resnetlab.train.checkpoint import clean_temporary, list_checkpoints, load_checkpoint, load_latest, save_checkpoint

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("kill_harness", ROOT / "benchmarks" / "kill_harness.py")
harness = importlib.util.module_from_spec(_spec)
sys.modules["kill_harness"] = harness  # dataclasses look their module up by name
_spec.loader.exec_module(harness)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """The generated data and the uninterrupted reference run (one kill per trial keeps CI short)."""
    return harness.prepare(tmp_path_factory.mktemp("kill") / "work", harness.Settings(max_kills=1))


def test_killed_runs_resume_to_the_reference_weights(bench):
    """One SIGKILL trial in the default run; test_twenty_five_kill_trials (slow) runs 25."""
    summary = harness.Summary()
    rng = random.Random(1)
    harness.run_trial(bench, 0, rng, summary)
    assert summary.problems == []
    assert summary.losses == summary.torn == summary.mismatches == summary.errors == 0
    assert summary.kills >= 1


def wait_for_first_write(run_dir: Path, process: subprocess.Popen) -> None:
    seen: set[str] = set()
    while process.poll() is None and not harness.new_writes(run_dir, seen):
        time.sleep(0.005)


@pytest.mark.slow  # two real training processes; the loop's own stop test is tests/train/test_loop.py
def test_sigterm_and_ctrl_c_stop_with_a_checkpoint_and_resume_exactly(bench):
    run, log = bench.work / "graceful", bench.work / "graceful.log"
    command = bench.command(run)
    for number, sig in enumerate([signal.SIGTERM, signal.SIGINT]):
        process = harness.start(command, bench.env, log)
        wait_for_first_write(run, process)
        process.send_signal(sig)
        assert process.wait(timeout=300) == 130, log.read_text()
        stops = [line for line in log.read_text().splitlines() if "stopped at step" in line]
        assert len(stops) == number + 1
        # The resume command is printed as it works here (started with `python -m resnetlab`), and is run as printed.
        printed = shlex.split(stops[-1].split("checkpoint saved. Resume with: ")[1])
        assert printed[-4:] == ["resnetlab", "train", "--resume", str(run)] and printed[-5] == "-m"
        resume = command = [*printed, "--quiet"]
        stopped_at = int(stops[-1].split("stopped at step ")[1].split(";")[0])
        assert load_latest(run).step == stopped_at
    process = harness.start(resume, bench.env, log)
    assert process.wait(timeout=300) == 0, log.read_text()
    assert harness.check_finished(bench, run) == []


def save_killed(run: Path, step: int, keep: int, patch) -> None:
    """Call save_checkpoint in a forked child that ``patch`` SIGKILLs at a chosen instant: no exception handler or
    finally clause runs, exactly as with a real kill."""
    newest = load_checkpoint(list_checkpoints(run)[0])
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            patch()
            save_checkpoint(run, "step", newest.model_state, {**newest.metadata, "step": step}, newest.state, keep)
        finally:
            os._exit(0)  # only reached if the patch never fired
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, "the staged kill did not happen"


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_kill_between_the_renames_of_a_replacement_loses_nothing(tiny_run):
    """Saving step 6 again renames the old step-6 to .old-*, then the new one into place: a kill between the two
    leaves no step-6 at all, until the next start puts the old one back."""
    rename = Path.rename

    def patch():
        def rename_or_die(self, target):
            if self.name.startswith(".tmp-"):
                die()
            return rename(self, target)
        Path.rename = rename_or_die

    save_killed(tiny_run, step=6, keep=2, patch=patch)
    newest = tiny_run / "checkpoints" / "step-00000006"
    assert not newest.exists()
    clean_temporary(tiny_run)
    assert list_checkpoints(tiny_run)[0] == newest and load_checkpoint(newest).step == 6
    assert not [p for p in newest.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_kill_while_pruning_leaves_no_torn_checkpoint(tiny_run):
    """A kill half-way through deleting a pruned checkpoint leaves no listed checkpoint that fails to load."""
    def patch():
        def remove_one_file_and_die(path, *args, **kwargs):
            next(Path(path).iterdir()).unlink()
            die()
        shutil.rmtree = remove_one_file_and_die

    save_killed(tiny_run, step=9, keep=1, patch=patch)
    assert [load_checkpoint(path).step for path in list_checkpoints(tiny_run)] == [9, 3]  # step-6 half-deleted
    clean_temporary(tiny_run)
    assert not [p for p in (tiny_run / "checkpoints").iterdir() if p.name.startswith(".")]


def test_kill_between_the_last_checkpoint_and_the_history_write(tiny_run, capsys):
    """Found by the harness: killed after its final checkpoint but before rewriting history.csv/jsonl, a run used
    to finish on the next start with the history one epoch short. The history lives in every checkpoint too."""
    from resnetlab.cli import main
    from resnetlab.train.history import read_history

    rows = read_history(tiny_run)
    for name in ("history.jsonl", "history.csv"):
        lines = (tiny_run / name).read_text().splitlines(keepends=True)
        (tiny_run / name).write_text("".join(lines[:-1]))  # as it was before the last epoch's row
    assert len(read_history(tiny_run)) == len(rows) - 1
    assert main(["train", "--resume", str(tiny_run), "--quiet"]) == 0
    assert read_history(tiny_run) == rows
    assert (tiny_run / "history.csv").read_text().count("\n") == len(rows) + 1


def test_the_harness_notices_torn_and_changed_checkpoints(bench, tmp_path):
    """The checks the trials rely on do fail when a checkpoint is torn or a single weight differs."""
    run = Path(shutil.copytree(bench.work / "reference", tmp_path / "run"))
    newest = list_checkpoints(run)[0]
    step = load_checkpoint(newest).step
    torn = newest.parent / newest.name.replace(str(step), str(step + 1))
    shutil.copytree(newest, torn)
    (torn / "state.pt").write_bytes((torn / "state.pt").read_bytes()[:100])
    _, problems = harness.check_after_kill(run, step)
    assert problems and problems[0].startswith("torn checkpoint")
    shutil.rmtree(torn)
    changed = {**bench.reference, "weights": dict(bench.reference["weights"])}
    key = next(iter(changed["weights"]))
    changed["weights"][key] = changed["weights"][key].clone()
    changed["weights"][key].view(-1)[0] = torch.nextafter(changed["weights"][key].view(-1)[0], torch.tensor(1.0))
    assert harness.differences(bench.reference, changed) == [f"weights[{key}] differs"]
    assert harness.check_finished(bench, run) == []


@pytest.mark.slow
def test_twenty_five_kill_trials(tmp_path):
    summary = harness.run_harness(25, seed=0, work=tmp_path / "work")
    assert summary.problems == []
    assert summary.losses == summary.torn == summary.mismatches == summary.errors == 0
    assert summary.trials == 25 and summary.kills >= 25
