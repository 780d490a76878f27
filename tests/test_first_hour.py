"""A user's first hour: each mistake of issue #14, made through the CLI as a user makes it, gets one line with
the way forward (exit 2), and each suggested command works as printed."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from resnetlab import cli_checks
from resnetlab.cli import main
from resnetlab.data import load_dataset
from resnetlab.train.announce import small_image_warning
from resnetlab.train.inference import load_trained

TINY = ["--model", "resnet8", "--epochs", "2", "--batch-size", "16", "--val-split", "12", "--quiet"]


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1]


@pytest.fixture(scope="module")
def relative_run(tmp_path_factory, tiny_data):
    """A run trained from its own directory with a relative --data path, as the quick start does."""
    from resnetlab.data.cache import resolve_cache_dir

    # A module-scoped fixture runs before the per-test cache fixture: the session's one must already apply.
    assert not resolve_cache_dir().is_relative_to(Path.home() / ".cache")
    home = tmp_path_factory.mktemp("home")
    shutil.copytree(tiny_data, home / "data" / "tiny")
    cwd = os.getcwd()
    os.chdir(home)
    try:
        assert main(["train", "--data", "data/tiny", "--out", "runs/r", *TINY]) == 0
    finally:
        os.chdir(cwd)
    return home


def test_data_path_is_stored_absolute_and_eval_works_from_elsewhere(relative_run, capsys, monkeypatch, tmp_path):
    config = (relative_run / "runs" / "r" / "config.toml").read_text()
    assert f'data = "{relative_run / "data" / "tiny"}"' in config
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["eval", str(relative_run / "runs" / "r")]) == 0
    assert "test accuracy" in capsys.readouterr().out


def test_moved_data_is_named_with_its_origin_and_given_with_data(tmp_path, tiny_data, capsys):
    data, run = Path(shutil.copytree(tiny_data, tmp_path / "tiny")), tmp_path / "r"
    assert main(["train", "--data", str(data), "--out", str(run), *TINY]) == 0
    moved = data.rename(tmp_path / "moved")
    capsys.readouterr()
    assert main(["eval", str(run)]) == 2
    line = error_line(capsys)
    assert line.startswith(f"resnetlab eval: error: data source not found: {data} ")
    assert "stored in" in line and "config" in line and "--data PATH" in line
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 2
    assert "--data PATH" in error_line(capsys)
    assert main(["eval", str(run), "--data", str(moved)]) == 0
    assert main(["train", "--resume", str(run), "--epochs", "3", "--data", str(moved), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"overriding data = '{data}' -> '{moved}'" in out and "done:" in out


def test_a_shorter_length_than_trained_is_refused_with_a_new_out(relative_run, capsys):
    run = relative_run / "runs" / "r"
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "1", "--quiet"]) == 2
    line = error_line(capsys)
    assert "has already trained 2 epochs" in line and f"--out {run}-1ep" in line
    assert main(["train", "--out", str(run), "--iterations", "3", "--quiet"]) == 2
    assert f"--out {run}-3it" in error_line(capsys)


def test_the_same_length_again_reports_the_final_weights(relative_run, capsys):
    run = relative_run / "runs" / "r"
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--epochs", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "done:" in out and "already finished: all 6 steps done, nothing to train" in out
    assert "a larger --epochs trains it longer" in out
    assert "resuming at step" not in out  # not "resuming at step 6 (epoch 3)" of a 2-epoch run


def test_resume_command_is_the_one_that_works_here(monkeypatch, tmp_path, capsys):
    from resnetlab.train import loop
    from resnetlab.train.step import TrainingStopped

    def stopped(*args, **kwargs):
        raise TrainingStopped(Path("runs/resnet20-cpu"), 7)

    monkeypatch.setattr(loop, "fit", stopped)
    venv_script = tmp_path / ".venv" / "bin" / "resnetlab"
    venv_script.parent.mkdir(parents=True)
    venv_script.write_text("#!/bin/sh\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [".venv/bin/resnetlab", "train"])
    monkeypatch.setenv("PATH", "/nonexistent")
    assert main(["train", "--data", "synthetic", "--out", str(tmp_path / "x")]) == 130
    assert error_line(capsys).endswith("Resume with: .venv/bin/resnetlab train --resume runs/resnet20-cpu")
    monkeypatch.setattr(sys, "argv", ["/somewhere/resnetlab/__main__.py", "train"])
    assert cli_checks.command_prefix() == f"{sys.executable} -m resnetlab"


def test_predict_and_eval_of_a_run_without_checkpoint_say_when_the_first_comes(tmp_path, capsys):
    run = tmp_path / "young"
    run.mkdir()
    (run / "config.toml").write_text('model = "resnet20"\n')
    image = next((Path(__file__).parent / "fixtures").rglob("*.npy"))  # any file; never opened
    for argv in (["eval", str(run)], ["predict", str(run), str(image)]):
        assert main(argv) == 2
        line = error_line(capsys)
        assert "no checkpoint yet" in line and "end of its first epoch" in line and "model.safetensors" not in line


def test_cifar10_offline_suggests_a_local_copy(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RESNETLAB_CIFAR_URL", (tmp_path / "no-mirror").as_uri())
    assert main(["train", "--data", "cifar10", "--out", str(tmp_path / "r"), "--quiet"]) == 2
    captured = capsys.readouterr()
    line = captured.err.strip().splitlines()[-1]
    assert "cannot download" in line and "--data PATH" in line and "$RESNETLAB_DATA" in line
    assert "first load: reading and decoding" not in captured.out  # nothing is decoded when nothing came


def test_a_misspelt_flag_gets_the_commands_usage_and_a_suggestion(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--batchsize", "64"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: resnetlab train ")
    assert "unrecognized arguments: --batchsize 64 (did you mean --batch-size?)" in err


def test_epochs_and_iterations_together_are_refused(tmp_path, capsys):
    assert main(["train", "--data", "synthetic", "--epochs", "1", "--iterations", "5", "--out", str(tmp_path)]) == 2
    assert "give --epochs or --iterations, not both" in error_line(capsys)


def test_resume_of_a_missing_folder_says_so(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path / "nosuch")]) == 2
    assert f"--resume {tmp_path / 'nosuch'}: no such folder" in error_line(capsys)


def test_class_mismatch_lists_the_differences_without_an_ellipsis(relative_run, tmp_path, capsys):
    other = tmp_path / "other"
    for split in ("train", "test"):
        for name in ("cat", "dog", "truck"):
            source = relative_run / "data" / "tiny" / split / ("ship" if name == "truck" else name)
            shutil.copytree(source, other / split / name)
    assert main(["eval", str(relative_run / "runs" / "r"), "--data", str(other)]) == 2
    line = error_line(capsys)
    assert "only in the data: truck; only in the checkpoint: ship" in line and "..." not in line



def test_eval_split_val_counts_the_runs_held_out_images(relative_run, capsys):
    capsys.readouterr()
    assert main(["eval", str(relative_run / "runs" / "r"), "--split", "val"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "val accuracy" in first and first.endswith(", 12 images")
    assert main(["eval", str(relative_run / "runs" / "r"), "--split", "train", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 72 - 12


def test_eval_flip_reports_test_time_augmentation_beside_the_plain_accuracy(relative_run, capsys):
    run = relative_run / "runs" / "r"
    capsys.readouterr()
    assert main(["eval", str(run), "--flip", "--amp", "off"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    printed = re.search(r"test accuracy (\d+\.\d\d)% .*; with flip test-time augmentation (\d+\.\d\d)%$", first)
    assert printed, first
    trained = load_trained(run, fold_bn=True)  # the model eval runs
    test = load_dataset(str(relative_run / "data" / "tiny")).test
    images = trained.normalizer(torch.from_numpy(test.images).permute(0, 3, 1, 2).contiguous())
    labels = torch.from_numpy(test.labels).long()
    with torch.no_grad():
        logits = trained.model(images)
        mirrored = (logits + trained.model(images.flip(-1))) / 2
    assert printed.group(1) == f"{100 * int((logits.argmax(1) == labels).sum()) / 24:.2f}"
    assert printed.group(2) == f"{100 * int((mirrored.argmax(1) == labels).sum()) / 24:.2f}"


def test_an_imagenet_stem_on_small_images_warns_and_names_the_alternatives(tiny_data, tmp_path, capsys):
    assert main(["train", "--data", str(tiny_data), "--model", "resnet18", "--iterations", "1", "--batch-size", "8",
                 "--val-split", "0", "--out", str(tmp_path / "r"), "--quiet"]) == 0  # a warning, not a refusal
    out = capsys.readouterr().out
    assert "length: 1 step of batch 8 = 1 epoch (" in out  # one step, not "1 steps"
    warning = next(line for line in out.splitlines() if line.startswith("warning: resnet18"))
    assert "ImageNet stem" in warning and "32x32" in warning and "1x1 feature maps" in warning
    assert "resnet18_cifar" in warning and "resnet20" in warning and "Training goes on" in warning
    assert small_image_warning("resnet18", 224) is None and small_image_warning("resnet20", 32) is None
    assert small_image_warning("resnet18_cifar", 32) is None and "2x2" in small_image_warning("resnet50", 48)


def test_startup_says_what_happens_and_no_bar_outside_a_terminal(tmp_path, tiny_data):
    """Through a pipe, as in a log file: start-up lines, one line per epoch, no progress bar."""
    data = shutil.copytree(tiny_data, tmp_path / "tiny")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "resnetlab", "train", "--data", str(data), "--model", "resnet8",
                             "--epochs", "2", "--batch-size", "24", "--val-split", "0", "--out", str(tmp_path / "r")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert "\r" not in out and "it/s" not in out
    assert "first load: reading and decoding" in out and "decoded" in out and "cached in" in out
    assert "model: resnet8, 74,835 parameters, 3 classes" in out
    recorded = json.loads((tmp_path / "r" / "environment.json").read_text())["precision"]  # --amp auto's choice
    precision = "bf16 autocast" if recorded["bf16"] else "fp32"
    assert "device: cpu (" in out and f", {precision}, channels_last" in out
    assert "length: 6 steps of batch 24 = 2 epochs (3 steps each)" in out
    assert [line.split(" |")[0] for line in out.splitlines() if line.startswith("epoch ")] == ["epoch 1/2",
                                                                                           "epoch 2/2"]


def test_plot_draws_every_run_with_markers_where_few_points_and_fits_the_axes(relative_run, tmp_path,
                                                                             monkeypatch, capsys):
    """Three runs, one of a single point: each is drawn (a single point needs a marker), the y axes hold the
    data and little else, the epoch ticks are whole numbers, the title uses the legend's words."""
    import matplotlib.pyplot as plt

    from resnetlab import plots

    short = tmp_path / "short"
    assert main(["train", "--data", str(relative_run / "data" / "tiny"), "--out", str(short), "--model", "resnet8",
                 "--epochs", "1", "--batch-size", "16", "--val-split", "0", "--quiet"]) == 0
    figures = []
    monkeypatch.setattr(plots.plt, "close", lambda figure: figures.append(figure))
    run = relative_run / "runs" / "r"
    assert main(["plot", str(run), str(short), str(short), "-o", str(tmp_path / "curves.png")]) == 0
    (figure,) = figures
    error_axes, loss_axes = figure.axes
    for axes in (error_axes, loss_axes):
        lines = axes.get_lines()
        assert len(lines) == 6 and all(line.get_marker() == "o" for line in lines)
        legend = {text.get_text() for text in axes.get_legend().get_texts()}
        assert {"r", "short"} <= legend and legend & {"training error", "training loss"}
        assert "dashed: training, solid: test" in axes.get_title() and legend & {"test error", "test loss"}
        values = [y for line in lines for y in line.get_ydata()]
        low, high = axes.get_ylim()
        assert low <= min(values) and max(values) <= high and (high - low) < 1.3 * (max(values) - min(values)) + 5
        ticks = [tick for tick in axes.get_xticks() if axes.get_xlim()[0] <= tick <= axes.get_xlim()[1]]
        assert ticks and all(float(tick).is_integer() for tick in ticks)
    plt.close(figure)
