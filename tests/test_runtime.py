"""Inference through ONNX Runtime on a CPU: the auto rule, refusals in one line, the same logits and accuracy as
PyTorch, one export per model kept in the cache."""

import json

import pytest
import torch

from resnetlab import runtime as rt
from resnetlab.cli import main
from resnetlab.errors import UserError
from resnetlab.models import create_model, fold_batchnorm
from test_export import trained_like  # BatchNorm statistics that show a folding or export mistake

TINY = ["--model", "resnet8", "--epochs", "1", "--batch-size", "16", "--val-split", "0", "--quiet"]


@pytest.mark.parametrize("device, bf16, images, installed, expected, because", [
    ("cpu", False, 10_000, True, "onnxruntime", "10,000 images"),
    ("cpu", False, 4_999, True, "torch", "too few to pay for an export"),
    ("cpu", False, 1, True, "torch", "1 image, too few"),
    ("cpu", False, 10_000, False, "torch", "pip install 'resnetlab[export]'"),
    ("cpu", True, 10_000, True, "torch", "bf16 on this CPU is PyTorch's"),
    ("meta", False, 10_000, True, "torch", "PyTorch on meta"),  # any device other than the CPU
])
def test_auto_takes_onnx_runtime_only_for_a_long_fp32_pass_on_the_cpu(device, bf16, images, installed, expected,
                                                                      because):
    chosen = rt.choose_runtime("auto", device, bf16, images, installed=installed)
    assert chosen.name == expected and because in chosen.reason
    assert chosen.line().startswith(f"runtime: {expected} (--runtime auto: ")


@pytest.mark.parametrize("device, bf16, installed, message", [
    ("meta", False, True, "runs on the CPU"),
    ("cpu", True, True, "add --amp off"),
    ("cpu", False, False, r"pip install 'resnetlab\[export\]'"),
])
def test_asking_for_onnx_runtime_where_it_cannot_run_is_refused_with_the_way_forward(device, bf16, installed,
                                                                                    message):
    with pytest.raises(UserError, match=message):
        rt.choose_runtime("onnxruntime", device, bf16, 10, installed=installed)
    assert rt.choose_runtime("torch", device, bf16, 10, installed=installed).name == "torch"
    assert rt.choose_runtime("onnxruntime", "cpu", False, 1, installed=True).name == "onnxruntime"  # even for 1


@pytest.mark.parametrize("name", ["resnet8", "resnet11v2"])  # option A (zero padding), pre-activation bottleneck
def test_the_session_gives_pytorchs_logits_and_is_exported_once(name, tmp_path, monkeypatch):
    model = fold_batchnorm(trained_like(create_model(name, num_classes=10), 32))
    session = rt.onnxruntime_model(model, 32, cache_dir=tmp_path)
    images = torch.randn(5, 3, 32, 32).contiguous(memory_format=torch.channels_last)  # as the loaders give them
    with torch.no_grad():
        assert torch.allclose(session(images), model(images), atol=1e-4)
    assert [path.name for path in (tmp_path / "onnx").iterdir()] == [session.path.name]

    def no_second_export(*_args, **_kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr("resnetlab.export.export_onnx", no_second_export)
    assert rt.onnxruntime_model(model, 32, cache_dir=tmp_path).path == session.path
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # other weights: another export, under another name
    with pytest.raises(AssertionError, match="exported again"):
        rt.onnxruntime_model(model, 32, cache_dir=tmp_path)


def test_a_damaged_cached_export_is_exported_again(tmp_path):
    model = create_model("resnet8", num_classes=3).eval()
    first = rt.onnxruntime_model(model, 32, cache_dir=tmp_path)
    first.path.write_bytes(b"not an onnx graph")  # a disk error, a copy cut short
    again = rt.onnxruntime_model(model, 32, cache_dir=tmp_path)
    assert again.path == first.path and again.path.stat().st_size > 1000
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(again(images), model(images), atol=rt.TOLERANCE)


def test_auto_falls_back_to_pytorch_when_the_export_fails_and_says_so(monkeypatch, capsys):
    def failing(*_args, **_kwargs):
        raise UserError("ONNX export failed: unsupported operator")

    monkeypatch.setattr(rt, "onnxruntime_model", failing)
    model = create_model("resnet8", num_classes=3)
    chosen, used = rt.prepare(rt.Runtime("auto", "onnxruntime", "long pass"), model, 32)
    assert chosen is model and used.name == "torch" and "export failed" in used.reason
    assert "ONNX Runtime not used: ONNX export failed" in capsys.readouterr().err
    with pytest.raises(UserError, match="unsupported operator"):
        rt.prepare(rt.Runtime("onnxruntime", "onnxruntime", "as asked"), model, 32)


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_data):
    directory = tmp_path_factory.mktemp("runtime") / "run"
    assert main(["train", "--data", str(tiny_data), "--out", str(directory), *TINY]) == 0
    return directory


def test_eval_and_predict_through_onnx_runtime_report_what_pytorch_reports(run, tiny_data, capsys):
    reports = {}
    for name in ("torch", "onnxruntime"):
        capsys.readouterr()
        assert main(["eval", str(run), "--json", "--device", "cpu", "--amp", "off", "--runtime", name]) == 0
        captured = capsys.readouterr()
        reports[name] = json.loads(captured.out)
        assert f"runtime: {name} (--runtime {name}: as asked)" in captured.err
    assert reports["onnxruntime"].pop("runtime") == "onnxruntime" and reports["torch"].pop("runtime") == "torch"
    assert reports["onnxruntime"]["confusion_matrix"] == reports["torch"]["confusion_matrix"]
    assert reports["onnxruntime"]["loss"] == pytest.approx(reports["torch"]["loss"], rel=1e-4)

    images = [str(path) for path in sorted((tiny_data / "test").rglob("*.png"))[:4]]
    predictions = {}
    for name in ("torch", "onnxruntime"):
        capsys.readouterr()
        assert main(["predict", str(run), *images, "--json", "--amp", "off", "--runtime", name]) == 0
        predictions[name] = json.loads(capsys.readouterr().out)
    for ours, theirs in zip(predictions["onnxruntime"], predictions["torch"]):
        assert [top["class"] for top in ours["top"]] == [top["class"] for top in theirs["top"]]
        assert [top["probability"] for top in ours["top"]] == pytest.approx(
            [top["probability"] for top in theirs["top"]], abs=1e-5)


def test_eval_of_a_small_split_stays_with_pytorch_under_auto(run, capsys):
    capsys.readouterr()
    assert main(["eval", str(run), "--json", "--device", "cpu", "--amp", "off"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["runtime"] == "torch"
    assert "runtime: torch (--runtime auto: " in captured.err
