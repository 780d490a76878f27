"""``resnetlab export`` checks where it writes before the export: a folder or a path under a file is one line."""

import re

import pytest

from resnetlab.cli import main
from resnetlab.train import inference


@pytest.fixture
def no_loading(monkeypatch):
    """The checkpoint must not even be read: loading it fails the test."""
    def loaded(*_args, **_kwargs):
        raise AssertionError("the checkpoint was loaded before the output path was checked")

    monkeypatch.setattr(inference, "load_trained", loaded)


@pytest.mark.parametrize("target, message", [("folder", "is a folder; give a file name, e.g. .*folder/model.onnx"),
                                             ("notes.txt/model.onnx", "notes.txt is a file, not a folder")])
def test_export_refuses_an_output_it_cannot_write_before_exporting(tmp_path, capsys, no_loading, target, message):
    (tmp_path / "folder").mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["export", str(tmp_path / "run"), "--onnx", str(tmp_path / target), "--no-verify"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert re.search(message, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "notes.txt"]
