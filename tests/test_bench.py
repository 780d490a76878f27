"""`resnetlab bench`: counts images right, runs the baseline in the same process, prints ratios."""

import json
import re

import pytest
import torch

from resnetlab.bench import BenchResult, bench_inference, bench_train, format_table
from resnetlab.cli import main


def test_bench_train_and_inference_count_images():
    train = bench_train("resnet8", 8, torch.device("cpu"), steps=3, warmup=1)
    assert train.images == 24 and train.images_per_sec == train.images / train.seconds > 0
    assert train.mode == "train" and train.warmup_seconds > 0 and train.peak_memory_mib > 0
    infer = bench_inference("resnet8", 4, torch.device("cpu"), steps=2, warmup=1)
    assert infer.images == 8 and infer.mode == "infer"


def test_table_shows_ratio_to_baseline():
    rows = [BenchResult("baseline", "train", "m", 8, "cpu", 100.0, 800, 8.0, 1.0, 10.0),
            BenchResult("resnetlab", "train", "m", 8, "cpu", 250.0, 800, 3.2, 1.0, 10.0)]
    table = format_table(rows)
    assert "2.50x" in table.splitlines()[-1]


def test_bench_cli_json_with_baseline(capsys):
    argv = ["bench", "--models", "resnet8", "--batch-sizes", "8", "--steps", "2", "--warmup", "1", "--workers", "0",
            "--device", "cpu", "--runtime", "torch", "--json"]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["pipeline"], r["mode"]) for r in rows} == {("baseline", "train"), ("resnetlab", "train"),
                                                           ("baseline", "infer"), ("resnetlab", "infer")}
    assert all(r["images"] == 16 for r in rows)


def test_every_baseline_runs_before_resnetlab_changes_process_settings(monkeypatch, capsys):
    """resnetlab's CPU runs keep freed memory for reuse (malloc settings, process-wide); the typical pipeline is
    measured before, with the defaults. The table still pairs each baseline row with its resnetlab row."""
    import resnetlab.bench
    import resnetlab.cli_bench

    calls = []
    module = resnetlab.cli_bench.load_baseline(None)

    def recorded(name, function):
        def wrapper(*args, **kwargs):
            calls.append(name)
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(module, "train_throughput", recorded("baseline", module.train_throughput))
    monkeypatch.setattr(module, "inference_throughput", recorded("baseline", module.inference_throughput))
    monkeypatch.setattr(resnetlab.cli_bench, "load_baseline", lambda path: module)
    monkeypatch.setattr(resnetlab.bench, "bench_train", recorded("resnetlab", resnetlab.bench.bench_train))
    monkeypatch.setattr(resnetlab.bench, "bench_inference", recorded("resnetlab", resnetlab.bench.bench_inference))
    argv = ["bench", "--models", "resnet8", "--batch-sizes", "4,8", "--steps", "1", "--warmup", "1", "--workers",
            "0", "--device", "cpu", "--runtime", "torch", "--json"]
    assert main(argv) == 0
    assert calls == ["baseline"] * 4 + ["resnetlab"] * 4
    rows = json.loads(capsys.readouterr().out)
    assert [(r["pipeline"], r["mode"], r["batch_size"]) for r in rows] == [
        ("baseline", "train", 4), ("resnetlab", "train", 4), ("baseline", "infer", 4), ("resnetlab", "infer", 4),
        ("baseline", "train", 8), ("resnetlab", "train", 8), ("baseline", "infer", 8), ("resnetlab", "infer", 8)]


def test_bench_cli_bad_model(capsys):
    assert main(["bench", "--models", "resnet21", "--no-baseline"]) == 2
    assert "6n+2" in capsys.readouterr().err


def test_bench_cli_takes_the_augmentation_and_reports_the_settings(capsys):
    argv = ["bench", "--models", "resnet8", "--batch-sizes", "4", "--steps", "1", "--warmup", "1", "--mode", "train",
            "--device", "cpu", "--augmentation", "keras", "--cuda-graphs", "auto", "--no-baseline", "--json"]
    assert main(argv) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert "augmentation=keras" in row["settings"] and "graphs=off" in row["settings"]  # no CUDA graph on a CPU


def test_inference_folds_batchnorm_unless_told_not_to(capsys):
    argv = ["bench", "--models", "resnet8", "--batch-sizes", "4", "--steps", "1", "--warmup", "1", "--mode", "infer",
            "--device", "cpu", "--no-baseline", "--runtime", "torch", "--json"]
    assert main(argv) == 0
    assert "fold_bn=on" in json.loads(capsys.readouterr().out)[0]["settings"]
    assert main([*argv, "--fold-bn", "off"]) == 0
    assert "fold_bn=off" in json.loads(capsys.readouterr().out)[0]["settings"]


def test_bench_cli_refuses_graphs_on_a_cpu(capsys):
    argv = ["bench", "--models", "resnet8", "--batch-sizes", "4", "--steps", "1", "--mode", "train", "--device", "cpu",
            "--cuda-graphs", "on", "--no-baseline"]
    assert main(argv) == 2
    assert "CUDA graphs need a CUDA device" in capsys.readouterr().err


def test_profile_reports_the_step_and_its_most_expensive_operators(capsys):
    argv = ["bench", "--models", "resnet8", "--batch-sizes", "4", "--steps", "1", "--warmup", "1", "--mode", "train",
            "--device", "cpu", "--no-baseline", "--profile", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    (profile,) = report["profiles"]
    assert profile["model"] == "resnet8" and profile["wall_ms"] > 0 and profile["device_ms"] is None  # CPU
    assert "convolution" in profile["table"] and len(report["results"]) == 1


def test_profile_summary_says_how_much_of_the_step_the_gpu_waits():
    from resnetlab.bench import StepProfile

    profile = StepProfile("resnet20", 512, "cuda", wall_ms=10.0, device_ms=4.0, kernels=417, table="")
    assert profile.launch_bound_fraction == 0.6
    assert "idle 60 % of the step" in profile.summary() and "128,000 img/s" in profile.summary()


QUICK = ["bench", "--models", "resnet8", "--batch-sizes", "2", "--steps", "1", "--warmup", "0", "--mode", "infer",
         "--device", "cpu", "--runtime", "torch"]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("extra, message", [
    (["--steps", "0"], "--steps must be at least 1"),
    (["--steps", "-1"], "--steps must be at least 1"),
    (["--warmup", "-1"], "--warmup cannot be negative"),
    (["--workers", "-1"], "--workers cannot be negative"),
    (["--models", ","], "--models needs at least one name"),
    (["--mode", ","], "--mode takes train and/or infer"),
    (["--batch-sizes", "0"], "--batch-sizes needs positive integers"),
    (["--baseline", "typical.py"], "give --baseline SCRIPT or --no-baseline, not both"),
])
def test_bench_refuses_settings_that_measure_nothing(capsys, extra, message):
    assert main([*QUICK, "--no-baseline", *extra]) == 2
    assert message in one_error_line(capsys)


def test_bench_batch_sizes_that_are_not_numbers_are_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stopped:
        main([*QUICK, "--no-baseline", "--batch-sizes", "x"])
    assert stopped.value.code == 2
    assert "expected integers separated by commas, got 'x'" in capsys.readouterr().err


@pytest.mark.parametrize("name, text, message", [
    ("notes.txt", "just notes\n", "is not a .py file; --baseline takes a Python script defining"),
    ("empty.py", "", "defines no train_throughput and no inference_throughput"),
    ("half.py", "def train_throughput(*args, **kwargs):\n    pass\n", "defines no inference_throughput;"),
    ("broken.py", "def (:\n", "cannot load baseline .*broken.py: SyntaxError"),
    ("raises.py", "import no_such_module_anywhere\n", "cannot load baseline .*ModuleNotFoundError"),
])
def test_a_baseline_that_is_not_a_usable_script_is_one_line(tmp_path, capsys, name, text, message):
    script = tmp_path / name
    script.write_text(text)
    assert main([*QUICK, "--baseline", str(script)]) == 2
    err = one_error_line(capsys)
    assert re.search(message, err), err


def test_a_baseline_script_with_both_functions_is_measured(tmp_path, capsys):
    script = tmp_path / "mine.py"
    script.write_text("from resnetlab.typical_pipeline import inference_throughput, train_throughput\n")
    assert main([*QUICK, "--baseline", str(script), "--json"]) == 0
    assert [row["pipeline"] for row in json.loads(capsys.readouterr().out)] == ["baseline", "resnetlab"]


def test_inference_runtime_auto_times_what_eval_of_a_test_set_runs_and_says_so(monkeypatch, capsys):
    """The default --runtime auto follows eval's rule (runtime.py): PyTorch without ONNX Runtime installed, ONNX
    Runtime for an fp32 CPU pass of a 10,000-image test set with it; both refuse what eval refuses."""
    import resnetlab.runtime

    argv = [*QUICK[:-2], "--no-baseline"]
    monkeypatch.setattr(resnetlab.runtime, "onnxruntime_installed", lambda: False)
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "runtime: torch (--runtime auto: ONNX Runtime is not installed" in out and "\nresnetlab " in out
    assert main([*argv, "--runtime", "both"]) == 2
    assert "pip install 'resnetlab[export]'" in one_error_line(capsys)
    monkeypatch.undo()
    assert main([*argv, "--amp", "bf16", "--runtime", "both"]) == 2
    assert "add --amp off" in one_error_line(capsys)
    if not resnetlab.runtime.onnxruntime_installed():
        pytest.skip("ONNX Runtime is not installed (resnetlab[export])")
    assert main([*argv, "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["pipeline"] == "onnxruntime" and row["images"] == 2 and row["warmup_seconds"] > 0
