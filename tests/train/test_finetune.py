"""Fine-tuning: --init from a torchvision-format state dict or a resnetlab checkpoint, the classifier swap,
--freeze, and the streamed end to end run through train, eval and predict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from PIL import Image

from resnetlab.cli import main
from resnetlab.data import StreamLoader
from resnetlab.data.pipeline import stream_splits
from resnetlab.errors import CheckpointError, UserError
from resnetlab.models import create_model
from resnetlab.train.checkpoint import save_checkpoint
from resnetlab.train.finetune import freeze, load_initial_weights, read_state_dict
from resnetlab.train.inference import load_trained

CLASSES = ("apple", "pear", "plum")


def torchvision_state_dict(tmp_path: Path, name: str = "resnet18", classes: int = 1000) -> Path:
    """A state dict saved as torchvision's model zoo saves one (torch.save of model.state_dict(); our ImageNet
    ResNets have torchvision's parameter names, tests/models/test_torchvision_compat.py checks them)."""
    torch.manual_seed(1)
    path = tmp_path / f"{name}-tv.pth"
    torch.save(create_model(name, num_classes=classes).state_dict(), path)
    return path


def test_weights_load_and_the_classifier_is_replaced(tmp_path):
    path = torchvision_state_dict(tmp_path)
    source = torch.load(path, weights_only=True)
    model = create_model("resnet18", num_classes=3)
    messages = []
    load_initial_weights(model, path, messages.append)
    state = model.state_dict()
    for key, value in source.items():
        if not key.startswith("fc."):
            assert torch.equal(state[key], value), key
    assert state["fc.weight"].shape == (3, 512)
    assert any("1000 classes" in m and "fc is replaced" in m for m in messages)


def test_same_class_count_keeps_the_classifier(tmp_path):
    path = torchvision_state_dict(tmp_path, classes=3)
    model = create_model("resnet18", num_classes=3)
    messages = []
    load_initial_weights(model, path, messages.append)
    assert torch.equal(model.fc.weight, torch.load(path, weights_only=True)["fc.weight"])
    assert not any("replaced" in m for m in messages)


def resnetlab_checkpoint(run_dir: Path, classes: list[str]) -> nn.Module:
    """A resnetlab checkpoint of a ResNet-18 trained (here: initialised) on ``classes``; returns that model."""
    model = create_model("resnet18", num_classes=len(classes))
    save_checkpoint(run_dir, "step", model.state_dict(), {"step": 1, "classes": classes, "model": "resnet18"},
                    {"step": 1})
    return model


def test_a_checkpoint_of_other_classes_of_the_same_count_gets_a_new_classifier(tmp_path):
    """Pre-trained on airplane/automobile/bird, fine-tuned on dog/frog/horse: the old rows name the wrong classes."""
    source = resnetlab_checkpoint(tmp_path / "run", ["airplane", "automobile", "bird"])
    model, messages = create_model("resnet18", num_classes=3), []
    fresh_fc = model.fc.weight.detach().clone()
    load_initial_weights(model, tmp_path / "run", messages.append, ["dog", "frog", "horse"])
    assert torch.equal(model.fc.weight, fresh_fc) and torch.equal(model.conv1.weight, source.conv1.weight)
    assert any("trained on airplane, automobile, bird, this data has dog, frog, horse: fc is replaced" in m
               for m in messages)


def test_a_checkpoint_of_the_same_classes_in_another_order_is_reordered(tmp_path):
    source = resnetlab_checkpoint(tmp_path / "run", ["plum", "apple", "pear"])
    model, messages = create_model("resnet18", num_classes=3), []
    load_initial_weights(model, tmp_path / "run", messages.append, ["apple", "pear", "plum"])
    assert torch.equal(model.fc.weight, source.fc.weight[[1, 2, 0]])
    assert torch.equal(model.fc.bias, source.fc.bias[[1, 2, 0]])
    assert any("reordered" in m for m in messages)
    messages.clear()
    load_initial_weights(model, tmp_path / "run", messages.append, ["plum", "apple", "pear"])
    assert torch.equal(model.fc.weight, source.fc.weight) and not any("fc" in m for m in messages)


def test_reference_checkpoints_and_ddp_prefixes_are_understood(tmp_path):
    state = create_model("resnet18", num_classes=5).state_dict()
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    loaded = read_state_dict(path)
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)


def test_weights_of_another_model_are_refused_in_one_line(tmp_path):
    path = torchvision_state_dict(tmp_path, "resnet34")
    refused = r"does not fit ResNet \(\d+ layers only in the file \(layer1\.2, "
    with pytest.raises(CheckpointError, match=refused) as caught:
        load_initial_weights(create_model("resnet18", num_classes=3), path, print)
    assert "\n" not in str(caught.value)


def test_pickled_code_is_never_run(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": Payload()}, path)
    with pytest.raises(CheckpointError, match="cannot read weights"):
        read_state_dict(path)
    assert not marker.exists()


def test_freeze_keeps_parameters_and_batchnorm_statistics(tmp_path):
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=3)
    assert freeze(model, "stem,layer1", lambda _: None) == ["stem", "layer1"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.1, momentum=0.9, weight_decay=1e-4)
    model.train()
    assert not model.bn1.training and not model.layer1[0].bn1.training and model.layer2[0].bn1.training
    for _ in range(2):
        loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 64, 64)), torch.tensor([0, 1, 2, 0]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = model.state_dict()
    for key in before:
        if key.startswith(("conv1.", "bn1.", "layer1.")):
            assert torch.equal(before[key], after[key]), key  # weights and running statistics
    assert not torch.equal(before["layer2.0.conv1.weight"], after["layer2.0.conv1.weight"])
    assert not torch.equal(before["layer2.0.bn1.running_mean"], after["layer2.0.bn1.running_mean"])
    with pytest.raises(UserError, match="unknown part layer9; this model has stem, layer1, layer2, layer3, layer4"):
        freeze(model, "layer9", print)


def write_photos(root: Path, train: int = 8, test: int = 3) -> Path:
    """JPEGs of assorted sizes around 80x60, one colour per class (learnable), noise on top."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("test", test)):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                h, w = int(rng.integers(56, 90)), int(rng.integers(56, 90))
                pixels = np.full((h, w, 3), 60.0)
                pixels[..., label] = 200
                pixels = np.clip(pixels + rng.normal(0, 25, pixels.shape), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=90)
    return root


def run_cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "resnetlab", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)


def test_fine_tuning_end_to_end_on_a_streamed_folder(tmp_path, capsys):
    photos = write_photos(tmp_path / "my_photos")
    weights = torchvision_state_dict(tmp_path)
    run = tmp_path / "run"
    result = run_cli("train", "--model", "resnet18", "--recipe", "finetune", "--init", weights, "--freeze",
                     "stem,layer1", "--data", photos, "--image-size", "64", "--epochs", "1", "--batch-size", "8",
                     "--data-workers", "1", "--out", run, "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "fc is replaced" in log and "frozen: stem, layer1" in log and "streamed" in log
    config = (run / "config.toml").read_text()
    assert 'data_pipeline = "auto"' in config and 'freeze = "stem,layer1"' in config
    results = json.loads((run / "results.json").read_text())
    assert results["epochs"] == 1 and results["final_test_acc"] is not None

    capsys.readouterr()
    assert main(["eval", str(run), "--json"]) == 0  # in this process: the command line above was the real one
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 9 and report["accuracy"] == pytest.approx(results["final_test_acc"])

    # predict resizes and centre-crops each file as eval's streamed test split does: the same probabilities
    trained = load_trained(run, fold_bn=False)
    test = stream_splits(str(photos), trained.image_size, "none").test
    loader = StreamLoader(test, len(test), normalizer=trained.normalizer, shuffle=False, drop_last=False,
                          num_workers=0)
    ((images, _),) = loader.epoch(0)
    with torch.no_grad():
        expected = torch.softmax(trained.model(images), dim=1)
    files = [test.file(index) for index in range(len(test))]
    assert main(["predict", str(run), *map(str, files), "--amp", "off", "--json"]) == 0
    predictions = json.loads(capsys.readouterr().out)
    assert [prediction["file"] for prediction in predictions] == list(map(str, files))
    for prediction, probabilities in zip(predictions, expected):
        top = prediction["top"]
        assert sorted(entry["class"] for entry in top) == sorted(CLASSES)  # --top-k 3: every class, once
        assert [entry["probability"] for entry in top] == sorted((entry["probability"] for entry in top), reverse=True)
        assert [entry["probability"] for entry in top] == pytest.approx(
            [probabilities[trained.classes.index(entry["class"])].item() for entry in top], abs=1e-5)
        # top-1 is eval's prediction (to the folded BatchNorm's rounding: this barely trained net has near ties)
        assert probabilities[trained.classes.index(top[0]["class"])].item() == pytest.approx(
            probabilities.max().item(), abs=1e-5)

    # a resnetlab checkpoint (here the run directory) is an --init source too; its 3 classes fit, nothing replaced
    messages = []
    model = create_model("resnet18", num_classes=3)
    load_initial_weights(model, run, messages.append)
    assert messages == [f"initial weights: {run} (122 tensors)"]


def test_bad_init_path_is_one_line_exit_2(tmp_path):
    photos = write_photos(tmp_path / "my_photos", train=2, test=1)
    result = run_cli("train", "--model", "resnet18", "--recipe", "finetune", "--init", tmp_path / "missing.pth",
                     "--data", photos, "--image-size", "64", "--iterations", "1", "--batch-size", "2", "--out",
                     tmp_path / "run", cwd=tmp_path)
    assert result.returncode == 2
    assert "error: --init" in result.stderr and "no such file" in result.stderr and "Traceback" not in result.stderr
