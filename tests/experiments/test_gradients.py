"""Gradient flow (DRL section 4.1): exact norms on a two-layer network worked out by hand, the probe's layer
order and side effects, and the experiment end to end (files, Markdown numbers equal to the CSV, resume)."""

import json
import math

import pytest
import torch
from experiment_checks import PNG_MAGIC, one_thread, read_csv, results_tables, verdict_lines
from torch import nn

from resnetlab.cli import main
from resnetlab.experiments import gradients
from resnetlab.experiments.gradients import gradient_norms, weight_layers
from resnetlab.models import create_model
from resnetlab.train.announce import small_image_warning


def test_two_layer_norms_by_hand():
    """y = W2 W1 x with loss = y: dL/dW2 = (W1 x)^T and dL/dW1 = W2^T x^T.

    x = (1, 2): W1 x = (5, 11), so |dW2| = sqrt(25 + 121) = sqrt(146); dW1 = [[1, 2], [-1, -2]], |dW1| = sqrt(10).
    x = (0, 1): W1 x = (2, 4), so |dW2| = sqrt(20); dW1 = [[0, 1], [0, -1]], |dW1| = sqrt(2).
    The probe averages the per-batch norms.
    """
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        model[1].weight.copy_(torch.tensor([[1.0, -1.0]]))
    batches = [(torch.tensor([[1.0, 2.0]]), torch.zeros(1)), (torch.tensor([[0.0, 1.0]]), torch.zeros(1))]
    norms = gradient_norms(model, batches, loss_fn=lambda output, target: output.sum())
    assert list(norms) == ["0", "1"]
    assert norms["0"] == pytest.approx((math.sqrt(10) + math.sqrt(2)) / 2, rel=1e-6)
    assert norms["1"] == pytest.approx((math.sqrt(146) + math.sqrt(20)) / 2, rel=1e-6)
    assert all(p.grad is None for p in model.parameters())


def test_probe_follows_forward_order_and_leaves_model_unchanged():
    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=3, shortcut="B").train()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    batches = [(torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0]))]
    norms = gradient_norms(model, batches)
    assert len(norms) == 8  # 7 convolutions + the classifier: the depth; projection shortcuts are not layers
    assert next(iter(norms)) == "conv1" and list(norms)[-1] == "fc" and list(norms)[1] == "layer1.0.conv1"
    assert all(value > 0 for value in norms.values())
    assert [name for name, _ in weight_layers(model)] == list(norms)
    after = model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)


@pytest.fixture(scope="module")
def gradients_dir(tmp_path_factory, tiny_data):
    out = tmp_path_factory.mktemp("gradients") / "exp"
    with pytest.MonkeyPatch.context() as patch, one_thread():
        patch.setenv("RESNETLAB_CACHE", str(tmp_path_factory.mktemp("gradient-cache")))
        assert main(["experiment", "gradients", "--models", "plain8,resnet8", "--steps", "2", "--batches", "2",
                     "--batch-size", "16", "--data", str(tiny_data), "--device", "cpu", "--out", str(out)]) == 0
    return out


def test_gradient_experiment_files_and_numbers(gradients_dir):
    assert (gradients_dir / "gradients.png").read_bytes()[:8] == PNG_MAGIC
    record = json.loads((gradients_dir / "experiment.json").read_text())
    assert record["kind"] == "gradients" and record["arguments"]["steps"] == 2
    markdown, rows = results_tables(gradients_dir)
    assert [(r["model"], r["stage"]) for r in rows] == [
        ("plain8", "at initialisation"), ("plain8", "after 2 SGD steps"),
        ("resnet8", "at initialisation"), ("resnet8", "after 2 SGD steps")]
    for shown, row in zip(markdown, rows):
        assert shown["first layer ‖g‖"] == row["first_layer_norm"]
        assert shown["last layer ‖g‖"] == row["last_layer_norm"]
        assert shown["first / last"] == row["first_to_last_ratio"] and shown["weight layers"] == row["layers"] == "8"
        assert shown["first / last of ‖g‖/‖W‖"] == row["first_to_last_relative_ratio"] != ""
    per_layer = read_csv(gradients_dir / "gradients.csv")
    first = [r for r in per_layer if r["model"] == "plain8" and r["stage"] == "at initialisation"]
    assert [r["layer_index"] for r in first] == [str(i) for i in range(1, 9)]
    assert f"{float(first[0]['grad_norm']):.2e}" == rows[0]["first_layer_norm"]
    lines = verdict_lines(gradients_dir)
    ratio = rows[0]["first_to_last_ratio"]
    assert lines[0].startswith(f"plain-8 at initialisation: gradients vanish towards the input: "
                               f"{'yes' if float(ratio) < 1e-2 else 'no'}, first/last layer norm ratio {ratio} "
                               f"({rows[0]['first_layer_norm']} vs {rows[0]['last_layer_norm']})")
    assert lines[0].endswith(f"relative to the weights' norms the ratio is {rows[0]['first_to_last_relative_ratio']}")
    relative = float(first[0]["grad_norm"]) / float(first[0]["weight_norm"])
    assert float(first[0]["grad_to_weight"]) == pytest.approx(relative, rel=1e-5)
    assert any(line.startswith("plain-8 first-layer gradient < ResNet-8's at initialisation: ") for line in lines)


def test_gradient_experiment_keeps_probed_models(gradients_dir, tiny_data, monkeypatch, capsys):
    def no_probe(*args, **kwargs):
        raise AssertionError("a probed model was probed again")

    monkeypatch.setattr(gradients, "probe_model", no_probe)
    before = (gradients_dir / "results.csv").read_text()
    assert main(["experiment", "gradients", "--models", "plain8,resnet8", "--steps", "2", "--batches", "2",
                 "--batch-size", "16", "--data", str(tiny_data), "--device", "cpu", "--out", str(gradients_dir)]) == 0
    assert (gradients_dir / "results.csv").read_text() == before
    assert capsys.readouterr().out.count("probed earlier, kept") == 2


def test_training_steps_are_the_loops_step_and_lr_with_the_recipes_warmup(monkeypatch):
    """The probe's SGD steps use the loop's optimizer, step and effective_lr: the warm-up lr holds until a check
    at the recipe's cadence finds the error below the threshold, then the schedule's lr follows."""
    from resnetlab.train.config import resolve_config

    used, steps_built = [], []
    real_set_lr, real_build = gradients.set_lr, gradients.build_train_step
    monkeypatch.setattr(gradients, "set_lr", lambda opt, lr: (used.append(lr), real_set_lr(opt, lr)))
    monkeypatch.setattr(gradients, "build_train_step", lambda *a, **k: steps_built.append(a[2]) or real_build(*a, **k))
    config = resolve_config("paper", overrides={"warmup_min_depth": 0, "warmup_error": 1.01, "warmup_check_every": 3})
    torch.manual_seed(0)
    model = create_model("resnet8")
    batches = [(torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,)))]
    losses = gradients.train_steps(model, batches, 5, config, depth=8, steps_per_epoch=390,
                                   device=torch.device("cpu"))
    assert len(losses) == 5 and all(math.isfinite(v) for v in losses)
    assert steps_built == [config]
    assert used == pytest.approx([0.01, 0.01, 0.01, 0.1, 0.1])  # the check after step 3 ends the warm-up
    used.clear()
    gradients.train_steps(create_model("resnet8"), batches, 2, config, depth=8, steps_per_epoch=390,
                          device=torch.device("cpu"))
    assert used == pytest.approx([0.01, 0.01])
    deep_only = resolve_config("paper")
    used.clear()
    gradients.train_steps(create_model("resnet8"), batches, 2, deep_only, depth=8, steps_per_epoch=390,
                          device=torch.device("cpu"))
    assert used == pytest.approx([0.1, 0.1])  # the paper's warm-up is for ResNet-110 and deeper only


def test_an_imagenet_net_on_small_images_is_warned_about_as_train_warns(tmp_path, tiny_data, capsys):
    with one_thread():
        assert main(["experiment", "gradients", "--models", "resnet18", "--steps", "0", "--batches", "1",
                     "--batch-size", "4", "--data", str(tiny_data), "--device", "cpu", "--out",
                     str(tmp_path / "exp")]) == 0
    captured = capsys.readouterr()
    assert small_image_warning("resnet18", 32) in captured.out + captured.err
