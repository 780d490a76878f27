"""The CLI end to end on tiny data: train -> checkpoint -> eval -> predict -> plot, and its one-line errors."""

import csv
import json
import math
import statistics

import numpy as np
import pytest
import torch
from PIL import Image

from resnetlab.cli import main
from resnetlab.data import DeviceLoader, load_dataset
from resnetlab.train.checkpoint import list_checkpoints, load_checkpoint
from resnetlab.train.inference import load_trained
from resnetlab.train.seeds import mean_std

TINY = ["--model", "resnet8", "--epochs", "2", "--batch-size", "16", "--val-split", "12", "--quiet"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_data):
    run = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--data", str(tiny_data), "--out", str(run), *TINY]) == 0
    return run


def test_train_writes_run_directory(trained_run):
    assert (trained_run / "config.toml").read_text().count("model = \"resnet8\"") == 1
    assert len((trained_run / "history.csv").read_text().splitlines()) == 3


def test_eval_json_reports_accuracy_and_confusion(trained_run, tiny_data, capsys):
    capsys.readouterr()
    assert main(["eval", str(trained_run), "--data", str(tiny_data), "--json", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    confusion = np.array(report["confusion_matrix"])
    assert report["images"] == 24 and report["classes"] == ["cat", "dog", "ship"]
    assert confusion.sum(axis=1).tolist() == [8, 8, 8]  # rows are the true classes: 8 test images each
    assert report["accuracy"] == pytest.approx(np.trace(confusion) / 24)
    assert report["error"] == pytest.approx(1 - report["accuracy"])
    assert report["per_class_accuracy"] == pytest.approx(
        {name: confusion[i, i] / 8 for i, name in enumerate(report["classes"])})


def test_eval_with_folded_batchnorm_reproduces_the_training_runs_test_figures(trained_run, capsys):
    """eval folds BN into the convolutions; the loss and accuracy are those the run recorded for the checkpoint a
    run directory stands for (the val-selected one): to fp32's rounding, or to bf16's where ``--amp auto`` picks
    bf16 (a processor with native bf16), since folding changes what is rounded (at most one image's prediction)."""
    capsys.readouterr()
    assert main(["eval", str(trained_run), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    selected = json.loads((trained_run / "results.json").read_text())["selected_epoch"]
    rows = [json.loads(line) for line in (trained_run / "history.jsonl").read_text().splitlines()]
    (row,) = [row for row in rows if row["epoch"] == selected and not row.get("partial")]
    bf16 = json.loads((trained_run / "environment.json").read_text())["precision"]["bf16"]  # what auto picked
    assert report["accuracy"] == pytest.approx(row["test_acc"], abs=1 / report["images"] if bf16 else 1e-9)
    assert report["loss"] == pytest.approx(row["test_loss"], rel=1e-2 if bf16 else 1e-5)


def test_a_trained_model_is_loaded_for_fast_inference(trained_run):
    """Folded BatchNorm and channels_last weights, the fast CPU path (benchmarks/README.md); same predictions."""
    import torch

    from resnetlab.train.inference import load_trained

    folded, plain = load_trained(trained_run, fold_bn=True), load_trained(trained_run)
    convs = [m for m in folded.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(conv.weight.is_contiguous(memory_format=torch.channels_last) for conv in convs)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.model.modules())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(folded.model(x), plain.model(x), rtol=1e-4, atol=1e-4)


def test_eval_text_defaults_to_training_data(trained_run, capsys):
    assert main(["eval", str(trained_run)]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "confusion matrix" in out


def reference_probabilities(run, data):
    """Softmax of the run's model (BatchNorm not folded) on the test split, loaded and normalized as eval does,
    in the split's (class, file name) order, with the labels."""
    trained = load_trained(run, fold_bn=False)
    test = load_dataset(str(data), image_size=trained.image_size).test
    ((images, labels),) = DeviceLoader(test, len(test), normalizer=trained.normalizer, shuffle=False,
                                       drop_last=False).epoch(0)
    with torch.no_grad():
        return torch.softmax(trained.model(images), dim=1), labels, trained.classes


def test_predict_gives_the_models_probabilities_ranked(trained_run, tiny_data, capsys):
    files = sorted((tiny_data / "test").rglob("*.png"))
    expected, labels, classes = reference_probabilities(trained_run, tiny_data)
    assert [classes[label] for label in labels] == [file.parent.name for file in files]  # the split's file order
    capsys.readouterr()
    assert main(["predict", str(trained_run), *map(str, files), "--top-k", "3", "--amp", "off", "--json"]) == 0
    predictions = json.loads(capsys.readouterr().out)
    assert [prediction["file"] for prediction in predictions] == [str(file) for file in files]
    for prediction, probabilities in zip(predictions, expected):
        top = prediction["top"]
        assert top[0]["class"] == classes[int(probabilities.argmax())]
        assert [entry["probability"] for entry in top] == sorted((entry["probability"] for entry in top),
                                                                 reverse=True)
        assert sum(entry["probability"] for entry in top) == pytest.approx(1, abs=1e-5)  # all 3 classes
        for entry in top:
            assert entry["probability"] == pytest.approx(probabilities[classes.index(entry["class"])].item(),
                                                         abs=1e-5)
    assert main(["predict", str(trained_run), *map(str, files[::8]), "--top-k", "2", "--amp", "off", "--json"]) == 0
    for two, three in zip(json.loads(capsys.readouterr().out), predictions[::8]):
        assert [entry["class"] for entry in two["top"]] == [entry["class"] for entry in three["top"][:2]]
        assert [entry["probability"] for entry in two["top"]] == pytest.approx(
            [entry["probability"] for entry in three["top"][:2]], abs=1e-6)


def test_predict_any_size_and_refuses_non_images(trained_run, tiny_data, tmp_path, capsys):
    original = tiny_data / "test" / "dog" / "0000.png"
    upscaled = tmp_path / "dog-96px.png"
    Image.open(original).resize((96, 96), Image.Resampling.NEAREST).save(upscaled)
    picture = tmp_path / "big.jpg"
    Image.fromarray(np.full((90, 120, 3), (200, 10, 10), np.uint8)).save(picture)
    capsys.readouterr()
    assert main(["predict", str(trained_run), str(original), str(upscaled), str(picture), "--amp", "off",
                 "--json"]) == 0
    small, large, wide = (prediction["top"] for prediction in json.loads(capsys.readouterr().out))
    assert large[0]["class"] == small[0]["class"]  # resized to the model's 32x32 as evaluation resized it
    assert len(wide) == 3 and sum(entry["probability"] for entry in wide) == pytest.approx(1, abs=1e-5)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    assert main(["predict", str(trained_run), str(text)]) == 2
    err = capsys.readouterr().err
    assert "notes.png" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("top_k", ["0", "-2"])
def test_predict_refuses_a_top_k_below_one(trained_run, tiny_data, capsys, top_k):
    capsys.readouterr()
    assert main(["predict", str(trained_run), str(tiny_data / "test" / "dog" / "0000.png"), "--top-k", top_k]) == 2
    err = capsys.readouterr().err
    assert f"--top-k must be at least 1, got {top_k}" in err and len(err.strip().splitlines()) == 1


def test_predict_runs_on_the_device_asked_for(trained_run, tiny_data, capsys):
    image = str(tiny_data / "test" / "dog" / "0000.png")
    capsys.readouterr()
    assert main(["predict", str(trained_run), image, "--device", "cpu", "--amp", "off", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["file"] == image
    assert main(["predict", str(trained_run), image, "--device", "tpu"]) == 2
    assert "unknown device 'tpu'" in capsys.readouterr().err


def test_plot_writes_png_and_csv(trained_run, tmp_path):
    output = tmp_path / "curves.png"
    assert main(["plot", str(trained_run), str(trained_run), "-o", str(output), "--x", "step"]) == 0
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(trained_run / "history.csv", newline="") as handle:
        history = list(csv.DictReader(handle))
    with open(output.with_suffix(".csv"), newline="") as handle:
        plotted = list(csv.DictReader(handle))
    assert list(plotted[0]) == ["run", "step", "train_error_pct", "test_error_pct", "train_loss", "test_loss"]
    assert len(plotted) == 2 * len(history)  # the run was given twice: its rows once for each
    for row, source in zip(plotted, history + history):
        assert row["run"] == trained_run.name and float(row["step"]) == float(source["step"])
        for metric in ("train", "test"):
            assert float(row[f"{metric}_error_pct"]) == pytest.approx(100 * float(source[f"{metric}_error"]))
            assert float(row[f"{metric}_loss"]) == pytest.approx(float(source[f"{metric}_loss"]))


def test_rerun_resumes_instead_of_overwriting(trained_run, tiny_data, capsys):
    assert main(["train", "--data", str(tiny_data), "--out", str(trained_run), *TINY[:2], "--epochs", "3",
                 "--batch-size", "16", "--val-split", "12", "--quiet"]) == 0
    assert "resuming" in capsys.readouterr().out
    assert len((trained_run / "history.csv").read_text().splitlines()) == 4


@pytest.mark.parametrize("extra, message", [
    (["--model", "resnet21"], "6n+2"),
    (["--lr", "-1"], "lr must be positive"),
    (["--epochs", "0"], "positive number of epochs"),
    (["--batch-size", "1000"], "batch size 1000 is larger"),
    (["--recipe", "nope"], "unknown recipe"),
    (["--set", "nonsense=1"], "unknown config key"),
])
def test_bad_arguments_one_line_exit_2(tiny_data, tmp_path, capsys, extra, message):
    argv = ["train", "--data", str(tiny_data), "--out", str(tmp_path / "x"), "--model", "resnet8", "--epochs", "1",
            "--val-split", "12", "--quiet", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_no_resume_refuses_a_directory_that_holds_a_run_and_leaves_it_untouched(trained_run, tiny_data, capsys):
    files = {path: path.stat().st_mtime_ns for path in trained_run.rglob("*") if path.is_file()}
    checkpoints = list_checkpoints(trained_run)
    capsys.readouterr()
    assert main(["train", "--data", str(tiny_data), "--out", str(trained_run), "--no-resume", *TINY]) == 2
    err = capsys.readouterr().err
    assert "already holds a run; choose another --out or drop --no-resume" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert list_checkpoints(trained_run) == checkpoints
    assert {path: path.stat().st_mtime_ns for path in trained_run.rglob("*") if path.is_file()} == files


def test_resume_of_a_directory_without_checkpoints_is_refused(trained_run, tmp_path, capsys):
    folder = tmp_path / "copied-config"
    folder.mkdir()
    (folder / "config.toml").write_text((trained_run / "config.toml").read_text())
    capsys.readouterr()
    assert main(["train", "--resume", str(folder), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"--resume {folder}: no checkpoint there to resume from" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert [path.name for path in folder.iterdir()] == ["config.toml"]


def test_changing_model_of_existing_run_refused(trained_run, capsys):
    assert main(["train", "--out", str(trained_run), "--model", "resnet20"]) == 2
    assert "cannot change model" in capsys.readouterr().err


def test_seeds_write_mean_and_std(tiny_data, tmp_path, capsys):
    out = tmp_path / "seeds"
    assert main(["train", "--data", str(tiny_data), "--out", str(out), "--seeds", "0,1", *TINY[:2], "--epochs", "1",
                 "--batch-size", "16", "--val-split", "12", "--quiet"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    runs = [json.loads((out / f"seed-{seed}" / "results.json").read_text()) for seed in (0, 1)]
    assert summary["seeds"] == [0, 1] and [run["seed"] for run in runs] == [0, 1]
    for key in ("final_test_acc", "selected_test_acc", "final_val_acc", "final_train_error", "wall_seconds"):
        values = [run[key] for run in runs]
        assert summary[key] == pytest.approx({"mean": statistics.fmean(values), "std": statistics.stdev(values),
                                              "n": 2}), key  # the sample std, as documented
    accuracies = [run["final_test_acc"] for run in runs]
    mean, std = statistics.fmean(accuracies), statistics.stdev(accuracies)
    assert f"| final_test_acc | {100 * mean:.2f} % | {100 * std:.2f} % | 2 |" in (out / "summary.md").read_text()
    assert f"final_test_acc: {100 * mean:.2f} +- {100 * std:.2f} %" in printed
    final = [load_checkpoint(list_checkpoints(out / f"seed-{seed}")[0]).model_state for seed in (0, 1)]
    assert not torch.equal(final[0]["conv1.weight"], final[1]["conv1.weight"])  # each seed trained its own net


def test_mean_std_is_the_sample_statistics_of_the_finite_values():
    assert mean_std([0.5, None, float("nan"), 0.75, float("inf")]) == pytest.approx((0.625, 0.25 / math.sqrt(2), 2))
    assert mean_std([0.4]) == (0.4, 0.0, 1)
    assert mean_std([None, float("nan")]) == (None, None, 0)
