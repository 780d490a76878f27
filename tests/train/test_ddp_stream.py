"""The streaming path under DistributedDataParallel on CPU (gloo): two processes share each global batch, each
decoding only its own shard, and follow one process's loss curve (as the in-memory path does in test_ddp.py)."""

import json
import os

import pytest
import torch.multiprocessing as mp
from test_ddp import ddp_config, epoch_losses, free_port

from resnetlab.train.checkpoint import load_checkpoint
from resnetlab.train.loop import fit

STREAM = dict(data_pipeline="stream", data_workers=0, normalization="channel")


def _worker(rank: int, world_size: int, port: int, data: str, run_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size), OMP_NUM_THREADS="1")
    fit(ddp_config(data, **STREAM), run_dir, show_progress=False, log=lambda _: None)


@pytest.mark.slow  # ~75 s on the 2-core machine under load; the sharding itself: tests/data/test_stream.py
def test_two_streaming_processes_match_one(tiny_data, tmp_path):
    single = tmp_path / "single"
    fit(ddp_config(tiny_data, **STREAM), single, show_progress=False, log=lambda _: None)
    double = tmp_path / "double"
    mp.start_processes(_worker, args=(2, free_port(), str(tiny_data), str(double)), nprocs=2, join=True,
                       start_method="spawn")
    one, two = epoch_losses(single), epoch_losses(double)
    assert len(one) == len(two) == 2
    # the same tolerance and reason as the in-memory test: each process normalises its half batch in BatchNorm
    assert two == pytest.approx(one, rel=0.25)
    results = json.loads((double / "results.json").read_text())
    assert results["final_test_acc"] == pytest.approx(json.loads((single / "results.json").read_text())[
        "final_test_acc"], abs=1 / 24 + 1e-9)
    assert 'data_pipeline = "stream"' in (double / "config.toml").read_text()
    assert load_checkpoint(double, with_state=False).metadata["pipeline"] == "stream"
