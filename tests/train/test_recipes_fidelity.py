"""The recipes say what they do: the tutorial's and the 2020 example's Keras settings, the paper's 50k training
without selection (a 45k/5k split one flag away), steps_per_epoch as Keras' fit takes it."""

import json

import torch

from resnetlab.cli import main
from resnetlab.data import KerasAugment
from resnetlab.train import loop
from resnetlab.train.config import recipe_description, recipe_names, resolve_config
from resnetlab.train.inputs import augmentation
from resnetlab.train.loop import fit


def test_keras_recipe_is_the_tutorials_generator_and_steps(capsys):
    config = resolve_config("keras")
    assert (config.rotation_range, config.width_shift_range, config.height_shift_range) == (20.0, 0.2, 0.2)
    assert config.steps_per_epoch == 50000 // 32 == 1562 and config.batch_size == 32
    assert augmentation(config) == KerasAugment(rotation_range=20, width_shift_range=0.2, height_shift_range=0.2)
    example = resolve_config("keras-example")
    assert (example.rotation_range, example.width_shift_range, example.height_shift_range) == (0.0, 0.1, 0.1)
    assert example.steps_per_epoch == 0 and not example.drop_last  # every image each epoch, 1563 batches
    assert main(["recipes", "-v"]) == 0
    shown = capsys.readouterr().out
    keras_block = shown.split("\nkeras: ")[1].split("\n\n")[0]
    for line in ("rotation_range = 20.0", "width_shift_range = 0.2", "height_shift_range = 0.2",
                 "steps_per_epoch = 1562"):
        assert line in keras_block
    example_block = shown.split("\nkeras-example: ")[1].split("\n\n")[0]
    for line in ("rotation_range = 0.0", "width_shift_range = 0.1", "steps_per_epoch = 0"):
        assert line in example_block


def test_recipe_texts_name_their_source_and_claim_nothing_exactly():
    assert "tutorial" in recipe_description("keras") and "Keras 3" in recipe_description("keras")
    assert "ran out of data" in recipe_description("keras")
    assert "2020" in recipe_description("keras-example")
    assert "section 4.2" in recipe_description("paper") and "--val-split 5000" in recipe_description("paper")
    for name in recipe_names():
        assert "exactly" not in recipe_description(name).lower(), name


def test_paper_recipe_trains_on_all_50k_and_selects_nothing(tiny_data, tmp_path):
    assert resolve_config("paper").val_split == 0
    config = resolve_config("paper", overrides=dict(model="resnet8", data=str(tiny_data), iterations=0, epochs=2,
                                                    batch_size=16, deterministic=True, tensorboard=False))
    results = fit(config, tmp_path / "run", show_progress=False, log=lambda _: None)
    assert results["selected_on"] is None and results["selected_test_acc"] is None
    assert "nothing selected" in results["selection_note"]
    assert results["final_test_acc"] is not None and results["steps"] == 2 * (72 // 16)  # all 72 images trained
    assert not list((tmp_path / "run" / "checkpoints").glob("best-*"))  # no selection, so no "best"


def test_paper_val_split_is_one_flag_away(tiny_data, tmp_path):
    out = tmp_path / "split"
    assert main(["train", "--data", str(tiny_data), "--out", str(out), "--model", "resnet8", "--epochs", "1",
                 "--batch-size", "16", "--val-split", "12", "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["selected_on"] == "val" and results["selection_note"] == "model selected on the validation split"
    assert list((out / "checkpoints").glob("best-*"))


def test_steps_per_epoch_takes_the_first_batches_of_each_epoch(tiny_data, tmp_path, monkeypatch):
    """Keras' fit(steps_per_epoch=2): each epoch trains on the first 2 batches of that epoch's own shuffle (here 2
    of the 3 batches of 72 images at batch 32), never a loader epoch carried on across epochs."""
    seen, loaders, original = [], [], loop.make_train_step

    def recording_step(run):
        step = original(run)
        loaders.append(run.train_loader)

        def wrapped(images, labels):
            seen.append((images.clone(), labels.clone()))
            return step(images, labels)
        return wrapped

    monkeypatch.setattr(loop, "make_train_step", recording_step)
    config = resolve_config("keras-example", overrides=dict(model="keras_resnet8v1", data=str(tiny_data), epochs=3,
                                                            steps_per_epoch=2, deterministic=True,
                                                            tensorboard=False))
    results = fit(config, tmp_path / "run", show_progress=False, log=lambda _: None)
    assert results["steps"] == 6 and results["epochs"] == 3
    (loader,) = loaders
    assert len(loader) == 3
    expected = [batch for epoch in range(3) for batch in list(loader.epoch(epoch))[:2]]  # drawn again: (seed, epoch)
    assert len(seen) == len(expected) == 6
    for step, ((images, labels), (want_images, want_labels)) in enumerate(zip(seen, expected)):
        assert torch.equal(labels, want_labels) and torch.equal(images, want_images), f"step {step}"
    assert not torch.equal(seen[0][1], seen[2][1])  # each epoch has its own order
