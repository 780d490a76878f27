"""Runs trained side by side in one process (forced interleaving on the CPU) end exactly as runs trained alone:
the same weights bit for bit, the same histories; a non-finite loss stops one run only; a stop request and a
SIGKILL leave every run resumable, and the restart ends at the same weights."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from resnetlab.cli import main
from resnetlab.errors import UserError
from resnetlab.train import loop
from resnetlab.train.checkpoint import list_checkpoints, load_checkpoint
from resnetlab.train.concurrent import Job, fit_concurrently, raise_for, resolve_concurrency
from resnetlab.train.config import resolve_config
from resnetlab.train.loop import TrainingStopped, fit

TIMING = {"epoch_seconds", "wall_seconds", "images_per_sec"}


def config(data, **changes):
    values = dict(model="resnet8", data=str(data), iterations=0, epochs=3, val_split=12, batch_size=16,
                  deterministic=True, log_every=2, tensorboard=False)
    values.update(changes)
    return resolve_config("paper", overrides=values)


def variants(data):
    """Three runs that differ in model, seed and learning rate."""
    return {"resnet8-s0": config(data), "plain8-s0": config(data, model="plain8"),
            "resnet8-s1": config(data, seed=1, lr=0.05)}


def weights(run_dir):
    return load_checkpoint(list_checkpoints(run_dir)[0]).model_state


def assert_same_run(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    rows_a = [json.loads(line) for line in (a / "history.jsonl").read_text().splitlines()]
    rows_b = [json.loads(line) for line in (b / "history.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in r.items() if k not in TIMING} for r in rows_a] == \
           [{k: v for k, v in r.items() if k not in TIMING} for r in rows_b]


@pytest.fixture(scope="module")
def alone(tmp_path_factory, tiny_data):
    root = tmp_path_factory.mktemp("alone")
    for name, cfg in variants(tiny_data).items():
        fit(cfg, root / name, show_progress=False, log=lambda _: None)
    return root


def test_interleaved_runs_end_bit_identical_to_runs_alone(alone, tiny_data, tmp_path, monkeypatch):
    order = []
    original = loop.make_train_step

    def recording(session):
        step = original(session)

        def step_fn(images, labels):
            order.append(session.run_dir.name)
            return step(images, labels)
        return step_fn

    monkeypatch.setattr(loop, "make_train_step", recording)
    jobs = [Job(cfg, tmp_path / name) for name, cfg in variants(tiny_data).items()]
    outcomes = fit_concurrently(jobs, log=lambda _: None)
    assert all(o.results and not o.error for o in outcomes)
    assert order[:6] == ["resnet8-s0", "plain8-s0", "resnet8-s1"] * 2  # they really take turns
    for name in variants(tiny_data):
        assert_same_run(alone / name, tmp_path / name)
        assert json.loads((tmp_path / name / "results.json").read_text())["final_test_acc"] == \
            json.loads((alone / name / "results.json").read_text())["final_test_acc"]


def test_a_non_finite_loss_stops_one_run_and_leaves_the_others_unchanged(alone, tiny_data, tmp_path):
    runs = variants(tiny_data)
    runs["exploding"] = config(tiny_data, lr=1e30, schedule="constant")
    outcomes = fit_concurrently([Job(cfg, tmp_path / name) for name, cfg in runs.items()], log=lambda _: None)
    failed = [o for o in outcomes if o.error]
    assert len(failed) == 1 and failed[0].job.run_dir.name == "exploding"
    assert "loss is nan at step 2" in str(failed[0].error) and "last good checkpoint" in str(failed[0].error)
    for name in variants(tiny_data):
        assert_same_run(alone / name, tmp_path / name)
    with pytest.raises(UserError, match="loss is nan"):
        raise_for(outcomes)


def test_a_stop_request_checkpoints_every_run_and_they_resume_exactly(alone, tiny_data, tmp_path):
    jobs = [Job(cfg, tmp_path / name) for name, cfg in variants(tiny_data).items()]

    def stop_after_first_epoch(line):
        if "epoch 1/3" in line:
            os.kill(os.getpid(), signal.SIGTERM)

    outcomes = fit_concurrently(jobs, log=stop_after_first_epoch)
    assert all(o.stopped for o in outcomes)
    assert all(list_checkpoints(job.run_dir) and not (job.run_dir / "results.json").exists() for job in jobs)
    with pytest.raises(TrainingStopped):
        raise_for(outcomes)
    assert all(o.results for o in fit_concurrently(jobs, log=lambda _: None))
    for name in variants(tiny_data):
        assert_same_run(alone / name, tmp_path / name)


def test_auto_means_one_after_another_on_a_cpu():
    assert resolve_concurrency("auto", "cpu", 5) == 1
    assert resolve_concurrency("3", "cpu", 5) == 3
    with pytest.raises(UserError):
        resolve_concurrency("none", "cpu", 2)


def test_sigkill_and_restart_resume_all_runs_exactly(tiny_data, tmp_path):
    """``train --seeds 0,1,2 --concurrent 2`` killed while seed 2 trains (0 and 1 finished), then started again."""
    flags = ["--model", "resnet8", "--data", str(tiny_data), "--epochs", "8", "--val-split", "12", "--batch-size",
             "16", "--deterministic", "--quiet", "--seeds", "0,1,2", "--set", "tensorboard=false"]
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    command = [sys.executable, "-m", "resnetlab", "train", *flags, "--out", str(killed), "--concurrent", "2"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if list_checkpoints(killed / "seed-2"):
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert list_checkpoints(killed / "seed-2"), "the kill came too late to test a resume"
    finished = {seed: (killed / f"seed-{seed}" / "results.json").exists() for seed in (0, 1)}
    finished_mtime = {seed: list_checkpoints(killed / f"seed-{seed}")[0].stat().st_mtime_ns for seed in (0, 1)
                      if finished[seed]}
    assert main(["train", *flags, "--out", str(killed), "--concurrent", "2"]) == 0
    assert main(["train", *flags, "--out", str(reference), "--concurrent", "1"]) == 0
    for seed in (0, 1, 2):
        assert_same_run(reference / f"seed-{seed}", killed / f"seed-{seed}")
    for seed, mtime in finished_mtime.items():  # a finished run is not trained again
        assert list_checkpoints(killed / f"seed-{seed}")[0].stat().st_mtime_ns == mtime
