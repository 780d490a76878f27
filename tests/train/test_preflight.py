"""A new run refused at start-up writes nothing into its run directory (train/preflight.py), and the check that
refuses a model the images do not fit changes nothing that is trained."""

import pytest
import torch

from resnetlab.cli import main
from resnetlab.errors import UserError
from resnetlab.train import loop, preflight
from resnetlab.train.checkpoint import list_checkpoints, load_checkpoint
from resnetlab.train.config import resolve_config
from resnetlab.train.loop import fit

SYNTHETIC = ["--data", "synthetic", "--iterations", "1", "--batch-size", "8", "--val-split", "0", "--quiet"]


def tiny_config(data, **changes):
    values = dict(model="resnet8", data=str(data), iterations=0, epochs=1, val_split=0, batch_size=16,
                  deterministic=True, tensorboard=False, device="cpu")
    return resolve_config("paper", overrides={**values, **changes})


def quiet(_: str) -> None:
    pass


def test_a_step_refused_by_the_device_leaves_no_run_records(tiny_data, tmp_path):
    with pytest.raises(UserError, match="cuda_graphs = on, but CUDA graphs need a CUDA device"):
        fit(tiny_config(tiny_data, cuda_graphs="on"), tmp_path / "run", show_progress=False, log=quiet)
    assert not (tmp_path / "run").exists()


def test_a_keras_net_at_another_image_size_is_refused_before_anything_is_written(tmp_path, capsys):
    assert main(["train", "--model", "keras_resnet20v1", "--image-size", "16", *SYNTHETIC,
                 "--out", str(tmp_path / "k1")]) == 2
    err = capsys.readouterr().err
    assert "keras_resnet20v1 ends in the tutorial's fixed 8x8 average pooling, so it takes only 32x32 images" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "k1").exists()


@pytest.mark.parametrize("side", [16, 64])
def test_a_model_that_cannot_take_the_image_size_is_one_line_with_nothing_written(tmp_path, monkeypatch, capsys,
                                                                                  side):
    monkeypatch.setattr(loop, "check_image_size", lambda config: None)  # the forward pass alone must catch it
    assert main(["train", "--model", "keras_resnet20v1", "--image-size", str(side), *SYNTHETIC,
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"keras_resnet20v1 cannot take {side}x{side} images (" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and not (tmp_path / "run").exists()


def test_the_image_check_changes_nothing_that_is_trained(tiny_data, tmp_path, monkeypatch):
    checked = fit(tiny_config(tiny_data), tmp_path / "checked", show_progress=False, log=quiet)
    monkeypatch.setattr(loop, "check_model_takes_images", lambda model, config, device: None)
    unchecked = fit(tiny_config(tiny_data), tmp_path / "unchecked", show_progress=False, log=quiet)
    assert checked["final_test_acc"] == unchecked["final_test_acc"]
    a, b = (load_checkpoint(list_checkpoints(tmp_path / name)[0]).model_state for name in ("checked", "unchecked"))
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_the_image_check_leaves_the_model_in_its_mode():
    from resnetlab.models import create_model

    model = create_model("resnet8").train()
    preflight.check_model_takes_images(model, tiny_config("synthetic"), torch.device("cpu"))
    assert model.training
