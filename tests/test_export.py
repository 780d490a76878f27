"""ONNX export: every model family exports with a dynamic batch and matches PyTorch in ONNX Runtime; the CLI
command writes a verified file with its metadata and refuses cleanly; the throughput functions count right."""

import contextlib
import io
import json
import sys

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from resnetlab.cli import main
from resnetlab.data import Normalizer
from resnetlab.errors import UserError
from resnetlab.export import export_onnx, onnxruntime_throughput, verify_onnx
from resnetlab.models import create_model

TOLERANCE = 1e-4  # the bar: max abs logit difference in fp32


def trained_like(model: nn.Module, image_size: int) -> nn.Module:
    """Non-trivial BatchNorm statistics (a fresh net's are 0 and 1, which hides folding mistakes) and logits
    scaled to a trained net's size (up to ~10; a fresh Keras net gives ~300, where fp32 rounding alone is
    ~1e-4 in both runtimes alike)."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
        model.eval()
        head = [module for module in model.modules() if isinstance(module, nn.Linear)][-1]
        scale = model(torch.randn(8, 3, image_size, image_size, generator=generator)).abs().max() / 10
        head.weight /= scale
        head.bias /= scale
    return model


PIXEL_MEAN = Normalizer("pixel_mean", torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1)),
                        torch.ones(3, 1, 1))


SLOW = pytest.mark.slow  # every family in -m slow; the default run exports the two that pad with F.pad


@pytest.mark.parametrize("name, options, image_size, normalizer", [
    ("resnet8", {}, 32, None),                     # option A: strided identity + zero-padded channels (F.pad)
    ("keras_resnet8v1", {}, 32, PIXEL_MEAN),       # TensorFlow "same" padding (asymmetric F.pad), in-graph
                                                   #   preprocessing: the tutorial's subtract_pixel_mean
    pytest.param("resnet8", {"shortcut": "B"}, 32, None, marks=SLOW),    # 1x1 projections
    pytest.param("plain8", {}, 32, None, marks=SLOW),
    pytest.param("resnet11v2", {}, 32, None, marks=SLOW),                # pre-activation bottleneck
    pytest.param("preact_resnet8", {}, 32, None, marks=SLOW),            # pre-activation basic block
    pytest.param("keras_resnet11v2", {}, 32, None, marks=SLOW),
    pytest.param("resnet18", {"num_classes": 10}, 64, None, marks=SLOW), # ImageNet stem (7x7 conv, max pool)
])
def test_every_family_exports_and_matches_pytorch(tmp_path, name, options, image_size, normalizer):
    model = trained_like(create_model(name, **options), image_size)
    path = export_onnx(model, tmp_path / f"{name}.onnx", image_size, normalizer=normalizer,
                       include_preprocessing=normalizer is not None)
    assert verify_onnx(path, model, (1, 3), normalizer) < TOLERANCE
    graph = onnx.load(path).graph
    assert [i.name for i in graph.input] == ["images"] and [o.name for o in graph.output] == ["logits"]
    batch_dim = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # symbolic: any batch size
    assert graph.input[0].type.tensor_type.elem_type == (onnx.TensorProto.UINT8 if normalizer else
                                                          onnx.TensorProto.FLOAT)
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_data):
    """A 1-epoch resnet8 trained on the tiny dataset and exported by the CLI."""
    folder = tmp_path_factory.mktemp("export")
    run, out = folder / "run", folder / "model.onnx"
    assert main(["train", "--data", str(tiny_data), "--out", str(run), "--model", "resnet8", "--epochs", "1",
                 "--batch-size", "16", "--val-split", "12", "--normalization", "channel", "--quiet"]) == 0
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(["export", str(run), "--onnx", str(out)]) == 0
    return run, out, printed.getvalue()


def test_cli_export_writes_verified_file_with_metadata(exported):
    _, out, printed = exported
    assert f"wrote {out}" in printed and "max abs logit difference" in printed
    meta = {entry.key: entry.value for entry in onnx.load(out).metadata_props}
    assert json.loads(meta["classes"]) == ["cat", "dog", "ship"]
    assert meta["normalization"] == "channel" and len(json.loads(meta["mean"])) == 3
    assert len(json.loads(meta["std"])) == 3 and meta["model"] == "resnet8" and meta["image_size"] == "32"
    assert "float32" in meta["input"]
    assert not list(out.parent.glob(".*"))


def test_exported_file_gets_the_permissions_of_a_normal_file(exported):
    """Readable by others under a normal umask (0644 under 022), not the 0600 of a temporary file."""
    import os
    import stat

    _, out, _ = exported
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
    if umask == 0o022:
        assert stat.S_IMODE(out.stat().st_mode) == 0o644


def test_cli_export_refuses_a_mismatch_and_keeps_the_old_file(exported, tmp_path, monkeypatch, capsys):
    run, _, _ = exported
    out = tmp_path / "model.onnx"
    out.write_bytes(b"old")
    def fake_export(model, path, *args, **kwargs):  # the real export is tested above; this is about the CLI
        path.write_bytes(b"new")
        return path

    monkeypatch.setattr("resnetlab.export.export_onnx", fake_export)
    monkeypatch.setattr("resnetlab.export.verify_onnx", lambda *args, **kwargs: 3e-4)
    capsys.readouterr()
    assert main(["export", str(run), "--onnx", str(out)]) == 2
    err = capsys.readouterr().err
    assert "differ by up to 0.0003" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


@pytest.mark.parametrize("tolerance", ["-1", "0", "nan"])
def test_a_tolerance_no_export_can_meet_is_refused_before_exporting(exported, tmp_path, monkeypatch, capsys,
                                                                    tolerance):
    run, _, _ = exported

    def no_export(*args, **kwargs):
        raise AssertionError("exported before the tolerance was checked")

    monkeypatch.setattr("resnetlab.export.export_onnx", no_export)
    capsys.readouterr()
    assert main(["export", str(run), "--onnx", str(tmp_path / "m.onnx"), "--tolerance", tolerance]) == 2
    err = capsys.readouterr().err
    assert f"--tolerance must be positive (a max abs logit difference), got {float(tolerance):g}" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "m.onnx").exists()


def test_missing_onnxruntime_is_one_line(exported, tmp_path, monkeypatch, capsys):
    run, out, _ = exported
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    capsys.readouterr()
    assert main(["export", str(run), "--onnx", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "onnxruntime is not installed" in err and "resnetlab[export]" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(UserError, match=r"resnetlab\[export\]"):
        onnxruntime_throughput(out, 2, iterations=1)


def test_throughput_counts_images(exported):
    _, out, _ = exported
    result = onnxruntime_throughput(out, 4, iterations=3, repeats=2, warmup=1, threads=1)
    assert result.images == 2 * 3 * 4 and len(result.per_repeat) == 2 and result.images_per_second > 0
    assert result.runtime == "onnxruntime" and result.seconds > 0
    timed = onnxruntime_throughput(out, 2, seconds=0.2, repeats=2, warmup=1)
    assert timed.images > 0 and timed.images % 2 == 0
    assert result.images_per_second == pytest.approx(float(np.median(result.per_repeat)))


def test_throughput_rejects_nonsense(exported):
    with pytest.raises(UserError, match="positive"):
        onnxruntime_throughput(exported[1], 0, iterations=1)
