"""Files resnetlab writes are readable by whoever could read a file the user made with ``open``: the temporary
files and folders behind the atomic writes (0600/0700) and safetensors (0600) must not leak their modes."""

import os
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from resnetlab.errors import UserError
from resnetlab.files import atomic_path, atomic_write_text, check_output_file
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


def test_atomic_path_refuses_a_folder_and_leaves_it_as_it_was(tmp_path):
    (tmp_path / "out" / "inside").mkdir(parents=True)
    with pytest.raises(UserError, match=f"{tmp_path / 'out'} is a folder; give a file name inside it"):
        with atomic_path(tmp_path / "out"):
            pass
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["inside"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_path_under_a_file_names_that_file(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=f"cannot write .*: {tmp_path / 'notes.txt'} is a file, not a folder"):
        atomic_write_text(tmp_path / "notes.txt" / "deeper" / "report.md", "text")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_output_checks_suggest_a_name_and_see_permissions(tmp_path):
    with pytest.raises(UserError, match=f"e.g. {tmp_path / 'model.onnx'}"):
        check_output_file(tmp_path, example="model.onnx")
    index = tmp_path / "new" / "weights" / "index.json"
    assert check_output_file(index) == index  # folders that do not exist yet are made by the write
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(UserError, match=f"no permission to write in {locked}"):
            check_output_file(locked / "weights" / "index.json")
