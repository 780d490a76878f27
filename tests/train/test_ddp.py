"""Multi-process training on CPU (gloo): two processes with the same global batch follow the same loss curve."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch.multiprocessing as mp

from resnetlab.train.config import resolve_config
from resnetlab.train.loop import fit


def ddp_config(data, **changes):
    values = dict(model="resnet8", data=str(data), iterations=0, epochs=2, val_split=12, batch_size=16,
                  augmentation="none", deterministic=True, log_every=3, lr=0.05)
    values.update(changes)
    return resolve_config("paper", overrides=values)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, data: str, run_dir: str, changes: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size), OMP_NUM_THREADS="1")
    fit(ddp_config(data, **changes), run_dir, show_progress=False, log=lambda _: None)


def epoch_losses(run_dir):
    return [json.loads(line)["train_loss"] for line in (run_dir / "history.jsonl").read_text().splitlines()]


def assert_two_processes_match_one(data: Path, tmp_path: Path, **changes) -> Path:
    """The same run in one process and in two (gloo); returns the two-process run directory."""
    single = tmp_path / "single"
    fit(ddp_config(data, **changes), single, show_progress=False, log=lambda _: None)
    double = tmp_path / "double"
    mp.start_processes(_worker, args=(2, free_port(), str(data), str(double), changes), nprocs=2, join=True,
                       start_method="spawn")
    one, two = epoch_losses(single), epoch_losses(double)
    assert len(one) == len(two) == 2
    # Same global batches and no augmentation; but each process normalises its half batch (8 images) with its
    # own BatchNorm statistics, as SyncBatchNorm has no CPU implementation. On this tiny task that moves the
    # epoch losses by up to ~20 % (measured: 0.858/0.269 for one process, 0.875/0.321 for two), hence the
    # tolerance of 25 %; a broken gradient average or shard (e.g. each process seeing all data) shows larger gaps.
    assert two == pytest.approx(one, rel=0.25)
    results = json.loads((double / "results.json").read_text())
    assert results["final_test_acc"] == pytest.approx(json.loads((single / "results.json").read_text())[
        "final_test_acc"], abs=1 / 24 + 1e-9)  # at most one of the 24 test images flips
    return double


def test_two_processes_match_one_process(tiny_data, tmp_path):
    assert_two_processes_match_one(tiny_data, tmp_path)


@pytest.mark.slow  # torchrun starts two more processes; test_two_processes_match_one_process stays fast
def test_torchrun_entry_point(tiny_data, tmp_path):
    run = tmp_path / "torchrun"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
               str(free_port()), "-m", "resnetlab", "train", "--data", str(tiny_data), "--out", str(run),
               "--model", "resnet8", "--epochs", "1", "--batch-size", "16", "--val-split", "12", "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("epoch 1/1") == 1  # only rank 0 logs
    assert (run / "results.json").exists() and len(list((run / "checkpoints").glob("step-*"))) == 1


def test_batch_must_divide_across_processes(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ValueError, match="not divisible by the 3 processes"):
        fit(ddp_config(tiny_data), tmp_path / "x", show_progress=False, log=lambda _: None)
