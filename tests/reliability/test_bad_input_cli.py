"""Bad arguments and bad data through ``resnetlab train``: one line, exit code 2, no traceback, and no run
directory left behind. (The library-level data checks are in tests/data/test_data_errors.py; the arguments
already covered by tests/train/test_cli_train.py are not repeated here.)"""

import shutil

import numpy as np
import pytest
from PIL import Image
from reliability_helpers import TINY, single_error_line

from resnetlab.cli import main
from resnetlab.train.checkpoint import list_checkpoints, load_checkpoint


def train(data, out, *extra) -> int:
    return main(["train", "--data", str(data), "--out", str(out), "--epochs", "1", *TINY, *extra])


@pytest.mark.parametrize("extra, message", [
    (["--model", "nosuchnet"], "unknown model 'nosuchnet'"),
    (["--model", "resnet9"], "depth 9 is not of the form 6n+2"),
    (["--lr", "0"], "lr must be positive, got 0.0"),
    (["--batch-size", "0"], "batch size must be positive, got 0"),
    (["--batch-size", "-4"], "batch size must be positive, got -4"),
    (["--epochs", "0"], "positive number of epochs"),
    (["--epochs", "-3"], "cannot be negative"),
    (["--set", "iterations=-5"], "cannot be negative"),  # --iterations with --epochs is refused first
])
def test_bad_argument(tiny_data, tmp_path, capsys, extra, message):
    assert train(tiny_data, tmp_path / "run", *extra) == 2
    assert message in single_error_line(capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text, message", [
    ("learning_rate = 0.1\n", "unknown config key 'learning_rate'"),
    ("batch_size = \"big\"\n", "'batch_size' must be int"),
])
def test_bad_recipe_file(tiny_data, tmp_path, capsys, text, message):
    recipe = tmp_path / "mine.toml"
    recipe.write_text(text)
    assert train(tiny_data, tmp_path / "run", "--config", str(recipe)) == 2
    line = single_error_line(capsys.readouterr().err)
    assert str(recipe) in line and message in line
    assert not (tmp_path / "run").exists()


def truncated_jpeg(root):
    path = root / "train" / "dog" / "0003.jpg"
    buffer = path.with_suffix(".tmp.jpg")
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(buffer, quality=95)
    path.write_bytes(buffer.read_bytes()[:-300])
    buffer.unlink()
    return "cannot decode image", path


def text_named_png(root):
    path = root / "test" / "cat" / "notes.png"
    path.write_text("not an image")
    return "cannot decode image", path


def empty_class(root):
    (root / "train" / "zebra").mkdir()
    (root / "test" / "zebra").mkdir()
    return "has no images", root / "train" / "zebra"


def different_classes(root):
    (root / "test" / "ship").rename(root / "test" / "boat")
    return "only in train: ship; only in test: boat", root


@pytest.mark.parametrize("damage", [truncated_jpeg, text_named_png, empty_class, different_classes])
def test_bad_data(tiny_data, tmp_path, capsys, damage):
    data = shutil.copytree(tiny_data, tmp_path / "data")
    message, culprit = damage(data)
    assert train(data, tmp_path / "run") == 2
    line = single_error_line(capsys.readouterr().err)
    assert message in line and str(culprit) in line
    assert not (tmp_path / "run").exists()


def test_other_modes_and_sizes_are_converted_or_refused_by_flag(tmp_path, capsys):
    """Grayscale, RGBA, palette and odd-sized images train like any other (converted to RGB, resized); with
    --strict-size an image of another size is refused, naming it."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 10), ("test", 3)):
        for label, name in enumerate(("a", "b")):
            folder = tmp_path / "data" / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = rng.integers(0, 256, (13 + 7 * index, 21, 3), dtype=np.uint8)
                mode = ("L", "RGBA", "P", "RGB", "CMYK")[index % 5]
                image = Image.fromarray(pixels).convert(mode)
                image.save(folder / f"{index}.{'jpg' if mode == 'CMYK' else 'png'}")
    assert main(["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--model", "resnet8", "--batch-size", "4", "--val-split", "4", "--image-size", "8", "--quiet"]) == 0
    assert load_checkpoint(list_checkpoints(tmp_path / "run")[0]).metadata["classes"] == ["a", "b"]
    capsys.readouterr()
    assert main(["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "strict"), "--epochs", "1",
                 "--model", "resnet8", "--batch-size", "4", "--val-split", "4", "--image-size", "8", "--quiet",
                 "--strict-size"]) == 2
    line = single_error_line(capsys.readouterr().err)
    assert "is 21x13, not 8x8" in line and "--strict-size" in line
    assert not (tmp_path / "strict").exists()
    # a streamed folder is cropped per image: the flag would check nothing there, so it is refused
    assert main(["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "streamed"), "--epochs", "1",
                 "--model", "resnet8", "--batch-size", "4", "--image-size", "8", "--quiet", "--strict-size",
                 "--data-pipeline", "stream"]) == 2
    assert "this folder streams" in single_error_line(capsys.readouterr().err)
    assert not (tmp_path / "streamed").exists()


def test_non_finite_loss_exits_2_naming_the_step_and_keeps_the_checkpoint(tiny_run, capsys):
    good = list_checkpoints(tiny_run)[0]
    capsys.readouterr()
    code = main(["train", "--resume", str(tiny_run), "--epochs", "3", "--lr", "1e30", "--schedule", "constant",
                 "--quiet"])
    assert code == 2
    line = single_error_line(capsys.readouterr().err)
    assert "at step 8 (epoch 3)" in line and str(good) in line  # step 7 still ran on the good weights
    assert list_checkpoints(tiny_run)[0] == good and load_checkpoint(good).step == 6
    assert not (tiny_run / ".lock").exists()
