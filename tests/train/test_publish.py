"""Publishing never loses a published weight: a taken name is kept unless --replace, and the folder, its index and
the run are checked before anything is measured or written; a failed write leaves the index and the files as they
were."""

import os
from pathlib import Path

import pytest

from resnetlab import files
from resnetlab.cli import main
from resnetlab.errors import UserError
from resnetlab.models.weights import INDEX_FILE, file_sha256, read_index
from resnetlab.train import publish as publish_module
from resnetlab.train.publish import publish


@pytest.fixture
def finished_run(resnet8_run) -> Path:
    return resnet8_run


@pytest.fixture
def folder(finished_run, tmp_path) -> Path:
    """A weights folder where resnet8.tiny is already published."""
    weights = tmp_path / "weights"
    publish(finished_run, "tiny", weights, data_description="the first one", log=lambda _: None)
    return weights


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of the folder, hidden temporary ones included."""
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def single_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_published_name_is_not_replaced_without_replace(finished_run, folder):
    before = snapshot(folder)
    said = []
    with pytest.raises(UserError, match=r"resnet8\.tiny is already published in .*; use another --tag, or --replace"):
        publish(finished_run, "tiny", folder, data_description="the second one", log=said.append)
    assert snapshot(folder) == before
    assert said == []  # refused before measuring anything


def test_replace_overwrites_the_file_and_its_index_entry(finished_run, folder):
    publish(finished_run, "tiny", folder, data_description="the second one", replace=True, log=lambda _: None)
    record = read_index(folder)["resnet8.tiny"]
    assert record["data"] == "the second one"
    assert record["sha256"] == file_sha256(folder / record["file"])
    assert sorted(path.name for path in folder.iterdir()) == [INDEX_FILE, "resnet8-tiny.safetensors"]


def test_a_file_the_index_does_not_list_is_not_overwritten(finished_run, tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "resnet8-tiny.safetensors").write_bytes(b"someone's file")
    with pytest.raises(UserError, match="does not list it; move it away, or give --replace"):
        publish(finished_run, "tiny", weights, log=lambda _: None)
    assert (weights / "resnet8-tiny.safetensors").read_bytes() == b"someone's file"


def test_an_unreadable_index_is_refused_before_anything_is_written(finished_run, folder):
    index = folder / INDEX_FILE
    index.write_bytes(index.read_bytes()[:-20])
    before = snapshot(folder)
    said = []
    with pytest.raises(UserError, match="not a readable weights index"):
        publish(finished_run, "tiny", folder, replace=True, log=said.append)
    assert snapshot(folder) == before and said == []


def test_an_index_that_cannot_be_written_leaves_the_published_file_as_it_was(finished_run, folder, monkeypatch):
    before = snapshot(folder)

    def full_disk(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(publish_module, "write_index", full_disk)
    with pytest.raises(OSError):
        publish(finished_run, "tiny", folder, data_description="the second one", replace=True, log=lambda _: None)
    assert snapshot(folder) == before


def test_weights_that_cannot_take_their_place_leave_the_index_as_it_was(finished_run, folder, monkeypatch):
    before = snapshot(folder)
    rename = os.replace

    def refuse_the_weights(source, destination):
        if Path(destination).suffix == ".safetensors":
            raise OSError(5, "Input/output error")
        rename(source, destination)

    monkeypatch.setattr(files.os, "replace", refuse_the_weights)
    with pytest.raises(OSError):
        publish(finished_run, "tiny", folder, data_description="the second one", replace=True, log=lambda _: None)
    monkeypatch.setattr(files.os, "replace", rename)
    assert snapshot(folder) == before
    record = read_index(folder)["resnet8.tiny"]
    assert record["sha256"] == file_sha256(folder / record["file"])


def test_a_weights_dir_that_is_a_file_is_refused_before_measuring(finished_run, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a folder")
    assert main(["publish", str(finished_run), "--tag", "tiny", "--weights-dir", str(notes / "weights")]) == 2
    captured = capsys.readouterr()
    assert f"{notes} is a file, not a folder" in single_error_line(captured.err)
    assert "measuring" not in captured.out
    assert notes.read_text() == "not a folder"


def test_the_publish_command_refuses_a_taken_name_and_replaces_it_when_asked(finished_run, tmp_path, capsys):
    weights = str(tmp_path / "weights")
    command = ["publish", str(finished_run), "--tag", "tiny", "--weights-dir", weights]
    assert main(command) == 0
    capsys.readouterr()
    assert main(command) == 2
    assert "--replace to overwrite it" in single_error_line(capsys.readouterr().err)
    assert main([*command, "--replace"]) == 0
    assert "published resnet8.tiny" in capsys.readouterr().out
