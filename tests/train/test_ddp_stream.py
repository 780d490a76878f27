"""The streaming path under DistributedDataParallel on CPU (gloo): two processes share each global batch, each
decoding only its own shard, and follow one process's loss curve (as the in-memory path does in test_ddp.py)."""

import pytest
from test_ddp import assert_two_processes_match_one

from resnetlab.train.checkpoint import load_checkpoint


@pytest.mark.slow  # ~75 s on the 2-core machine under load; the sharding itself: tests/data/test_stream.py
def test_two_streaming_processes_match_one(tiny_data, tmp_path):
    double = assert_two_processes_match_one(tiny_data, tmp_path, data_pipeline="stream", data_workers=0,
                                            normalization="channel")
    assert 'data_pipeline = "stream"' in (double / "config.toml").read_text()
    assert load_checkpoint(double, with_state=False).metadata["pipeline"] == "stream"
