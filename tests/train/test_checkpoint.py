"""Checkpoint pruning never deletes the checkpoint just written, and the messages of a folder without one say what
it is: a finished run that kept none, a folder that is no run, a folder of runs."""

import pytest
import torch

from resnetlab.cli import main
from resnetlab.errors import CheckpointError
from resnetlab.train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint


def save_step(run_dir, step: int, keep: int):
    return save_checkpoint(run_dir, "step", {"w": torch.full((2,), float(step))}, {"step": step}, {}, keep=keep)


@pytest.mark.parametrize("keep", [0, -1])
def test_pruning_keeps_the_checkpoint_just_written(tmp_path, keep):
    first = save_step(tmp_path, 1, keep)
    assert list_checkpoints(tmp_path) == [first]
    second = save_step(tmp_path, 2, keep)
    assert list_checkpoints(tmp_path) == [second]


def test_pruning_keeps_the_newest_ones(tmp_path):
    for step in (1, 2, 3):
        save_step(tmp_path, step, keep=2)
    assert [path.name for path in list_checkpoints(tmp_path)] == ["step-00000003", "step-00000002"]


def test_a_finished_run_without_checkpoints_says_so(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "config.toml").write_text('model = "resnet8"\n')
    (tmp_path / "results.json").write_text("{}\n")
    with pytest.raises(CheckpointError, match="this run finished but kept no checkpoint"):
        load_checkpoint(tmp_path)


def test_an_unfinished_run_without_checkpoints_has_none_yet(tmp_path):
    (tmp_path / "config.toml").write_text('model = "resnet8"\n')
    with pytest.raises(CheckpointError, match="no checkpoint yet"):
        load_checkpoint(tmp_path)


def test_a_folder_that_is_no_run_is_named_as_such(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(CheckpointError, match=r"is not a run or checkpoint directory \(no checkpoints/, no "
                                              r"model\.safetensors\); give a run directory"):
        load_checkpoint(tmp_path)


def test_a_folder_of_runs_names_them(tmp_path):
    for seed in (0, 1):
        save_step(tmp_path / f"seed-{seed}", 1, keep=2)
    with pytest.raises(CheckpointError, match="it holds the runs seed-0, seed-1: name one of them"):
        load_checkpoint(tmp_path)


def test_eval_of_a_folder_that_is_no_run_is_one_line(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["eval", str(tmp_path), "--data", "synthetic"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "is not a run or checkpoint directory" in err
