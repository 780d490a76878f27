"""Untrusted files: a checkpoint never runs pickled code, archives cannot plant files or devices, and predict keeps
Pillow's decompression-bomb limit.

The archive checks for ``..``, absolute paths, symlinks, hard links, character devices and FIFOs are in
tests/data/test_data_errors.py; block devices are added here.
"""

import shutil
import struct
import tarfile
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from reliability_helpers import single_error_line

from resnetlab.cli import main
from resnetlab.data import load_dataset
from resnetlab.errors import CheckpointError, DataError
from resnetlab.train.checkpoint import FORMAT, MODEL_FILE, STATE_FILE, list_checkpoints, load_checkpoint


class Payload:
    """Unpickling this calls open(marker, "w"): the file appears if, and only if, the pickle is executed."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def plant(path, marker) -> None:
    """A torch pickle that looks like a resnetlab training state but carries the payload."""
    torch.save({"format": FORMAT, "step": 6, "optimizer": Payload(marker)}, path)


def test_the_payload_runs_when_unpickled_unsafely(tmp_path):
    """The control: without weights_only, loading this file does create the marker."""
    plant(tmp_path / "state.pt", tmp_path / "marker")
    torch.load(tmp_path / "state.pt", weights_only=False)
    assert (tmp_path / "marker").exists()


@pytest.mark.parametrize("file", [STATE_FILE, MODEL_FILE])
def test_load_checkpoint_never_unpickles(tiny_run, tmp_path, file):
    newest = list_checkpoints(tiny_run)[0]
    marker = tmp_path / "marker"
    plant(newest / file, marker)
    with pytest.raises(CheckpointError, match=str(newest / file)):
        load_checkpoint(newest)
    assert not marker.exists()


def test_eval_of_pickled_weights_exits_2_without_running_them(tiny_run, tmp_path, capsys):
    newest = list_checkpoints(tiny_run)[0]
    marker = tmp_path / "marker"
    plant(newest / MODEL_FILE, marker)
    assert main(["eval", str(newest)]) == 2
    assert str(newest / MODEL_FILE) in single_error_line(capsys.readouterr().err)
    assert not marker.exists()


def test_resume_from_pickled_state_exits_2_without_running_it(tiny_run, tmp_path, capsys):
    marker = tmp_path / "marker"
    newest, older = list_checkpoints(tiny_run)[:2]
    shutil.rmtree(older)
    plant(newest / STATE_FILE, marker)
    capsys.readouterr()
    assert main(["train", "--resume", str(tiny_run), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert "no loadable checkpoint" in single_error_line(captured.err)
    assert str(newest / STATE_FILE) in captured.out  # the refused file is named
    assert not marker.exists()


def test_tar_with_block_device_is_refused(tmp_path):
    path = tmp_path / "device.tar"
    with tarfile.open(path, "w") as tar:
        member = tarfile.TarInfo("train/cat/disk")
        member.type, member.devmajor, member.devminor = tarfile.BLKTYPE, 8, 0
        tar.addfile(member)
    with pytest.raises(DataError, match=r"'train/cat/disk'.*only files and folders"):
        load_dataset(path)


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims the given size; its pixel data is never needed to refuse it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_predict_refuses_a_decompression_bomb(tiny_run, tmp_path, capsys):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_claiming(40_000, 40_000))  # 1.6 gigapixels, more than twice Pillow's limit
    assert main(["predict", str(tiny_run), str(bomb)]) == 2
    line = single_error_line(capsys.readouterr().err)
    assert "bomb.png" in line and "decompression bomb" in line.lower()
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS >= 89_478_485  # Pillow's default, still on


def test_predict_keeps_a_lowered_limit(tiny_run, tmp_path, monkeypatch, capsys):
    picture = tmp_path / "modest.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(picture)
    assert main(["predict", str(tiny_run), str(picture)]) == 0
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64 * 64 = 4096 pixels: over twice the limit
    capsys.readouterr()
    assert main(["predict", str(tiny_run), str(picture)]) == 2
    assert "modest.png" in single_error_line(capsys.readouterr().err)

