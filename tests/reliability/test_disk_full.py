"""A disk that fills up while a checkpoint is written: the previous checkpoint stays intact and loadable, nothing
half-written stays behind, and the CLI says so in one line."""

import errno
import os
from pathlib import Path

import pytest
import torch
from reliability_helpers import single_error_line
from safetensors import SafetensorError

from resnetlab.cli import main
from resnetlab.errors import CheckpointError
from resnetlab.train import checkpoint
from resnetlab.train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
# What the libraries themselves raise when the disk is full, in their own words.
SAFETENSORS_FULL = SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
TORCH_FULL = RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 1408 vs 1344: No space left "
                          "on device")


def failing_halfway(write, error):
    """A writer that gets half the file onto the disk, then fails as a full disk does."""
    def wrapper(obj, path, *args, **kwargs):
        write(obj, path, *args, **kwargs)
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: len(data) // 2])
        raise error
    return wrapper


def fill_disk(monkeypatch, writer: str, error: BaseException) -> None:
    if writer == "weights":
        monkeypatch.setattr(checkpoint, "save_file", failing_halfway(checkpoint.save_file, error))
    else:
        monkeypatch.setattr(torch, "save", failing_halfway(torch.save, error))


def assert_intact(run, step: int) -> None:
    newest = list_checkpoints(run)[0]
    assert load_checkpoint(newest).step == step
    assert not [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("writer", ["weights", "state"])
@pytest.mark.parametrize("error", [ENOSPC, SAFETENSORS_FULL, TORCH_FULL], ids=["oserror", "safetensors", "torch"])
def test_full_disk_during_save_keeps_previous_checkpoint(tiny_run, monkeypatch, writer, error):
    previous = load_checkpoint(list_checkpoints(tiny_run)[0])
    fill_disk(monkeypatch, writer, error)
    with pytest.raises(CheckpointError, match=r"step-00000009: no space left on device; the previous checkpoint "
                                              r".*step-00000006 is intact"):
        save_checkpoint(tiny_run, "step", previous.model_state, {**previous.metadata, "step": 9},
                        previous.state, keep=1)
    assert_intact(tiny_run, 6)
    assert len(list_checkpoints(tiny_run)) == 2  # nothing was pruned for a checkpoint that was never written


def test_full_disk_when_replacing_a_checkpoint_of_the_same_step_keeps_it(tiny_run, monkeypatch):
    previous = load_checkpoint(list_checkpoints(tiny_run)[0])
    fill_disk(monkeypatch, "state", ENOSPC)
    with pytest.raises(CheckpointError, match="no space left on device"):
        save_checkpoint(tiny_run, "step", previous.model_state, previous.metadata, previous.state)
    assert_intact(tiny_run, 6)


def test_cli_reports_full_disk_in_one_line(tiny_run, monkeypatch, capsys):
    fill_disk(monkeypatch, "weights", ENOSPC)
    capsys.readouterr()
    assert main(["train", "--resume", str(tiny_run), "--epochs", "3", "--quiet"]) == 2
    line = single_error_line(capsys.readouterr().err)
    assert "no space left on device" in line and "step-00000006 is intact" in line
    assert_intact(tiny_run, 6)
    assert not (tiny_run / ".lock").exists()
