"""The training loop: exact resume, graceful stop, non-finite loss, run-directory records, Keras L2."""

import json
import shutil
import signal

import numpy as np
import pytest
import torch
from PIL import Image

from resnetlab.data import load_dataset, split_validation
from resnetlab.train import loop
from resnetlab.train.checkpoint import list_checkpoints, load_checkpoint
from resnetlab.train.config import resolve_config
from resnetlab.train.inference import load_trained
from resnetlab.train.loop import NonFiniteLoss, TrainingStopped, fit
from resnetlab.train.optim import conv_kernels, l2_penalty


def tiny_config(data, **changes):
    values = dict(model="resnet8", data=str(data), iterations=0, epochs=3, val_split=12, batch_size=16,
                  deterministic=True, log_every=2, keep_checkpoints=10, tensorboard=False)
    values.update(changes)
    return resolve_config("paper", overrides=values)


def final_weights(run_dir):
    return load_checkpoint(list_checkpoints(run_dir)[0]).model_state


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def sigterm_at(call: int):
    """A make_train_step whose step raises SIGTERM (a stop request) at its ``call``-th call."""
    original, calls = loop.make_train_step, {"n": 0}

    def stopping_step(session):
        step = original(session)

        def wrapped(images, labels):
            calls["n"] += 1
            if calls["n"] == call:
                signal.raise_signal(signal.SIGTERM)
            return step(images, labels)
        return wrapped

    return stopping_step


def test_resume_from_epoch_checkpoint_is_bit_exact(tiny_data, tmp_path):
    config = tiny_config(tiny_data)
    full = tmp_path / "full"
    fit(config, full, show_progress=False, log=lambda _: None)
    resumed = tmp_path / "resumed"
    shutil.copytree(full, resumed)
    for later in list_checkpoints(resumed)[:-1]:  # keep only the epoch-1 checkpoint
        shutil.rmtree(later)
    shutil.rmtree(resumed / "checkpoints" / next(p.name for p in (resumed / "checkpoints").glob("best-*")))
    fit(config, resumed, show_progress=False, log=lambda _: None)
    assert_same_weights(final_weights(full), final_weights(resumed))
    history_full = json.loads((full / "results.json").read_text())
    history_resumed = json.loads((resumed / "results.json").read_text())
    assert history_full["final_test_acc"] == history_resumed["final_test_acc"]
    assert (full / "history.csv").read_text().count("\n") == (resumed / "history.csv").read_text().count("\n") == 4


def test_stop_request_mid_epoch_checkpoints_and_resumes_exactly(tiny_data, tmp_path, monkeypatch):
    config = tiny_config(tiny_data)
    reference = tmp_path / "reference"
    fit(config, reference, show_progress=False, log=lambda _: None)

    original = loop.make_train_step
    monkeypatch.setattr(loop, "make_train_step", sigterm_at(5))  # epoch 2 of 3 (3 steps per epoch), mid-epoch
    stopped = tmp_path / "stopped"
    with pytest.raises(TrainingStopped, match="resnetlab train --resume"):
        fit(config, stopped, show_progress=False, log=lambda _: None)
    assert load_checkpoint(list_checkpoints(stopped)[0]).step == 5
    monkeypatch.setattr(loop, "make_train_step", original)
    fit(config, stopped, show_progress=False, log=lambda _: None)
    assert_same_weights(final_weights(reference), final_weights(stopped))


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tiny_data, tmp_path):
    run = tmp_path / "run"
    fit(tiny_config(tiny_data, epochs=2), run, show_progress=False, log=lambda _: None)
    good = list_checkpoints(run)[0]
    exploding = {"epochs": 4, "iterations": 0, "lr": 1e30, "schedule": "constant"}
    with pytest.raises(NonFiniteLoss, match=r"at step 8 \(epoch 3\).*last good checkpoint: .*step-00000006"):
        fit(tiny_config(tiny_data), run, overrides=exploding, show_progress=False, log=lambda _: None)
    assert list_checkpoints(run)[0] == good and load_checkpoint(good).step == 6


def test_run_directory_records(tiny_data, tmp_path):
    run = tmp_path / "run"
    results = fit(tiny_config(tiny_data, epochs=2), run, show_progress=False, log=lambda _: None)
    assert {"config.toml", "environment.json", "history.csv", "history.jsonl", "results.json"} <= {
        p.name for p in run.iterdir()}
    environment = json.loads((run / "environment.json").read_text())
    assert environment["torch"] == torch.__version__ and environment["seed"] == 0 and environment["device"] == "cpu"
    rows = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2]
    assert {"train_loss", "val_acc", "test_error", "lr", "images_per_sec", "epoch_seconds"} <= rows[0].keys()
    assert results["selected_on"] == "val" and results["final_test_acc"] == rows[-1]["test_acc"]
    assert len(list_checkpoints(run, "best")) == 1


def test_training_learns_the_tiny_task(tiny_data, tmp_path):
    results = fit(tiny_config(tiny_data, epochs=6, val_split=0, lr=0.05), tmp_path / "run", show_progress=False,
                  log=lambda _: None)
    assert results["final_test_acc"] > 0.6  # 3 classes: chance is 0.33


def test_keras_l2_penalty_is_coupled_sum_of_squares():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Conv2d(2, 1, 1))
    kernels = conv_kernels(model)
    assert len(kernels) == 2
    penalty = l2_penalty(kernels, 1e-4)
    expected = 1e-4 * sum((k ** 2).sum() for k in kernels)
    torch.testing.assert_close(penalty, expected)
    penalty.backward()
    torch.testing.assert_close(kernels[0].grad, 2e-4 * kernels[0].detach())


def test_history_mirrored_to_tensorboard_when_installed(tiny_data, tmp_path, monkeypatch):
    """TensorBoard is optional; with it, every history value becomes a scalar at the row's step."""
    import sys
    import types

    scalars, purges = [], []

    class FakeWriter:
        def __init__(self, log_dir, purge_step=None):
            purges.append((log_dir, purge_step))

        def add_scalar(self, tag, value, global_step):
            scalars.append((tag, value, global_step))

        def flush(self):
            pass

        def close(self):
            pass

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    run = tmp_path / "run"
    fit(tiny_config(tiny_data, epochs=1, tensorboard=True), run, show_progress=False, log=lambda _: None)
    assert purges == [(str(run / "tensorboard"), None)]
    assert any(tag == "train/train_loss" and step == 3 for tag, _, step in scalars)
    assert {tag for tag, _, _ in scalars} >= {"train/train_acc", "val/val_loss", "test/test_acc", "run/lr"}
    fit(tiny_config(tiny_data, epochs=1, tensorboard=True), run, overrides={"epochs": 2}, show_progress=False,
        log=lambda _: None)
    assert purges[-1][1] == 3 and scalars[-1][2] == 6  # resumed at step 3: later events of the killed run are purged


def test_eval_every_adds_history_points_inside_epochs_without_changing_training(tiny_data, tmp_path):
    plain = tmp_path / "plain"
    fit(tiny_config(tiny_data, epochs=2), plain, show_progress=False, log=lambda _: None)
    dense = tmp_path / "dense"
    results = fit(tiny_config(tiny_data, epochs=2, eval_every=2), dense, show_progress=False, log=lambda _: None)
    rows = [json.loads(line) for line in (dense / "history.jsonl").read_text().splitlines()]
    assert [(row["step"], row.get("partial", False)) for row in rows] == [
        (2, True), (3, False), (4, True), (6, False)]
    assert rows[0]["epoch"] == pytest.approx(2 / 3, abs=1e-3) and "test_acc" in rows[0]
    assert results["epochs"] == 2
    assert_same_weights(final_weights(plain), final_weights(dense))  # evaluation never touches training state


@pytest.fixture(scope="module")
def sawtooth_data(tmp_path_factory):
    """Three classes a mirror tells apart: columns rising 0, 85, 170, 255 (repeated), the same falling, and flat
    grey, plus noise. A net trained on them without flips gets them right, while the mean of its logits for an
    image and its mirror cannot tell rising from falling, so flip TTA scores lower than the plain accuracy."""
    rng = np.random.default_rng(0)
    rising = np.tile([0.0, 85.0, 170.0, 255.0], 8)
    columns = {"falling": rising[::-1], "flat": np.full(32, 128.0), "rising": rising}
    root = tmp_path_factory.mktemp("sawtooth") / "sawtooth"
    for split, count in (("train", 24), ("test", 8)):
        for name, values in columns.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = values[None, :, None] + rng.normal(0, 20, (32, 32, 3))
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{index:04d}.png")
    return root


def mirror_averaged_accuracy(model, normalizer, arrays):
    """The accuracy of the mean of the logits of each image and its mirror image, computed here by hand."""
    images = normalizer(torch.from_numpy(arrays.images).permute(0, 3, 1, 2).contiguous())
    labels = torch.from_numpy(arrays.labels).long()
    with torch.no_grad():
        mirrored = (model(images) + model(images.flip(-1))) / 2
    return int((mirrored.argmax(dim=1) == labels).sum()) / len(labels)


def test_flip_evaluation_adds_mirror_averaged_accuracy_without_changing_training(sawtooth_data, tmp_path):
    config = dict(epochs=1, augmentation="none", amp="off")
    plain = tmp_path / "plain"
    fit(tiny_config(sawtooth_data, **config), plain, show_progress=False, log=lambda _: None)
    flipped = tmp_path / "flip"
    lines = []
    results = fit(tiny_config(sawtooth_data, **config, eval_flip=True), flipped, show_progress=False,
                  log=lines.append)
    (row,) = [json.loads(line) for line in (flipped / "history.jsonl").read_text().splitlines()]
    trained = load_trained(list_checkpoints(flipped)[0])  # the last step: the weights the row was measured with
    dataset = split_validation(load_dataset(str(sawtooth_data)), 12, seed=0)
    assert row["test_acc_flip"] == mirror_averaged_accuracy(trained.model, trained.normalizer, dataset.test)
    assert row["val_acc_flip"] == mirror_averaged_accuracy(trained.model, trained.normalizer, dataset.val)
    assert row["test_acc_flip"] < row["test_acc"] and row["val_acc_flip"] < row["val_acc"]  # not the plain figure
    assert results["final_test_acc_flip"] == row["test_acc_flip"]
    assert f"acc {100 * row['test_acc']:.2f}% (flip TTA {100 * row['test_acc_flip']:.2f}%)" in lines[-1]
    assert "test_acc_flip" in (flipped / "history.csv").read_text().splitlines()[0]
    assert_same_weights(final_weights(plain), final_weights(flipped))


def test_cuda_graphs_on_without_a_gpu_is_refused_in_one_line(tiny_data, tmp_path):
    from resnetlab.errors import UserError

    with pytest.raises(UserError, match="cuda_graphs = on, but CUDA graphs need a CUDA device"):
        fit(tiny_config(tiny_data, epochs=1, cuda_graphs="on", device="cpu"), tmp_path / "run", show_progress=False,
            log=lambda _: None)


def test_resume_rules_apply_to_fit_called_from_python(tiny_data, tmp_path):
    """The config layer's resume rules hold however fit is called: a new model is refused, more epochs are not."""
    from resnetlab.errors import UserError

    run = tmp_path / "run"
    fit(tiny_config(tiny_data, epochs=1), run, show_progress=False, log=lambda _: None)
    with pytest.raises(UserError, match="cannot change model of an existing run"):
        fit(tiny_config(tiny_data, model="resnet14"), run, overrides={"model": "resnet14"}, show_progress=False,
            log=lambda _: None)
    lines = []
    results = fit(tiny_config(tiny_data, epochs=2), run, overrides={"epochs": 2}, show_progress=False,
                  log=lines.append)
    assert results["epochs"] == 2 and "resume: overriding epochs = 1 -> 2" in lines


def test_stop_at_an_epoch_end_without_its_checkpoint_saves_one(tiny_data, tmp_path, monkeypatch):
    """With checkpoint_every = 2, a stop right at the end of epoch 1 still leaves a checkpoint of that step."""
    config = tiny_config(tiny_data, checkpoint_every=2)
    reference = tmp_path / "reference"
    fit(config, reference, show_progress=False, log=lambda _: None)
    original = loop.make_train_step
    monkeypatch.setattr(loop, "make_train_step", sigterm_at(3))  # the last step of epoch 1 (3 steps per epoch)
    stopped = tmp_path / "stopped"
    with pytest.raises(TrainingStopped):
        fit(config, stopped, show_progress=False, log=lambda _: None)
    assert load_checkpoint(list_checkpoints(stopped)[0]).step == 3
    monkeypatch.setattr(loop, "make_train_step", original)
    fit(config, stopped, show_progress=False, log=lambda _: None)
    assert_same_weights(final_weights(reference), final_weights(stopped))
