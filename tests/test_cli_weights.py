"""``resnetlab weights MODEL``: an unknown model name is refused with the registry's suggestions, and a model with
nothing published says what is published instead."""

import json

import pytest

from resnetlab.cli import main
from resnetlab.models import weights as weights_module
from resnetlab.models.weights import INDEX_FILE, INDEX_FORMAT


@pytest.fixture
def published(tmp_path, monkeypatch):
    """An index listing resnet20.tiny, the only weights searched (not the package's)."""
    record = {"model": "resnet20", "tag": "tiny", "file": "resnet20-tiny.safetensors", "sha256": "0" * 64,
              "test_acc": 0.5, "recipe": "paper", "data": "a tiny folder"}
    (tmp_path / INDEX_FILE).write_text(json.dumps({"format": INDEX_FORMAT, "weights": {"resnet20.tiny": record}}))
    monkeypatch.setattr(weights_module, "PACKAGE_WEIGHTS", tmp_path / "no-package-weights")
    monkeypatch.setenv("RESNETLAB_WEIGHTS", str(tmp_path))


@pytest.mark.parametrize("typed, message", [("resnet-20", "unknown model 'resnet-20'; did you mean resnet20"),
                                            ("foo", "unknown model 'foo'")])
def test_an_unknown_model_is_refused_with_suggestions(published, capsys, typed, message):
    assert main(["weights", typed]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and message in captured.err and captured.out == ""


def test_a_model_without_weights_names_what_is_published(published, capsys):
    assert main(["weights", "resnet56"]) == 0
    assert capsys.readouterr().out.strip() == "no published weights for resnet56; published: resnet20.tiny"


def test_a_model_with_weights_lists_them(published, capsys):
    assert main(["weights", "resnet20"]) == 0
    assert capsys.readouterr().out.startswith("resnet20.tiny")
