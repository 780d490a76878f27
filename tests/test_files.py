"""Files resnetlab writes are readable by whoever could read a file the user made with ``open``: the temporary
files and folders behind the atomic writes (0600/0700) and safetensors (0600) must not leak their modes."""

import os
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from resnetlab.files import atomic_path, atomic_write_text
from resnetlab.train.checkpoint import save_checkpoint


@pytest.fixture(params=[0o022, 0o077])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_files_get_the_mode_of_a_normally_created_file(tmp_path, umask):
    weights = tmp_path / "net.safetensors"
    with atomic_path(weights) as temporary:
        save_file({"w": torch.zeros(2)}, temporary)
    text = atomic_write_text(tmp_path / "results.json", "{}")
    with open(tmp_path / "plain.txt", "w") as handle:
        handle.write("reference")
    assert mode(weights) == mode(text) == mode(tmp_path / "plain.txt") == 0o666 & ~umask


def test_checkpoints_are_readable_like_the_run_directory(tmp_path, umask):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    final = save_checkpoint(run_dir, "step", {"w": torch.ones(3)}, {"step": 7}, {"optimizer": {}})
    assert mode(final) == mode(run_dir) == 0o777 & ~umask
    assert sorted(p.name for p in final.iterdir()) == ["model.safetensors", "state.pt"]
    assert {mode(p) for p in final.iterdir()} == {0o666 & ~umask}
