"""The CLI end to end on tiny data: train -> checkpoint -> eval -> predict -> plot, and its one-line errors."""

import json

import numpy as np
import pytest
from PIL import Image

from resnetlab.cli import main

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
    assert report["images"] == 24 and 0 <= report["accuracy"] <= 1
    assert np.array(report["confusion_matrix"]).sum() == 24 and report["classes"] == ["cat", "dog", "ship"]
    assert set(report["per_class_accuracy"]) == {"cat", "dog", "ship"}


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


def test_predict_any_size_and_refuses_non_images(trained_run, tmp_path, capsys):
    picture = tmp_path / "big.jpg"
    Image.fromarray(np.full((90, 120, 3), (200, 10, 10), np.uint8)).save(picture)
    assert main(["predict", str(trained_run), str(picture), "--top-k", "2", "--json"]) == 0
    predictions = json.loads(capsys.readouterr().out)
    assert len(predictions[0]["top"]) == 2
    assert sum(p["probability"] for p in predictions[0]["top"]) <= 1 + 1e-6
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    assert main(["predict", str(trained_run), str(text)]) == 2
    err = capsys.readouterr().err
    assert "notes.png" in err and len(err.strip().splitlines()) == 1


def test_plot_writes_png_and_csv(trained_run, tmp_path):
    output = tmp_path / "curves.png"
    assert main(["plot", str(trained_run), str(trained_run), "-o", str(output), "--x", "step"]) == 0
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and output.with_suffix(".csv").exists()


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


def test_changing_model_of_existing_run_refused(trained_run, capsys):
    assert main(["train", "--out", str(trained_run), "--model", "resnet20"]) == 2
    assert "cannot change model" in capsys.readouterr().err


def test_seeds_write_mean_and_std(tiny_data, tmp_path):
    out = tmp_path / "seeds"
    assert main(["train", "--data", str(tiny_data), "--out", str(out), "--seeds", "0,1", *TINY[:2], "--epochs", "1",
                 "--batch-size", "16", "--val-split", "12", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["final_test_acc"]["n"] == 2
    assert (out / "seed-0" / "results.json").exists() and "| final_test_acc |" in (out / "summary.md").read_text()
