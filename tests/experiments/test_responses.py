"""Layer responses (DRL Figure 7): which outputs are measured, the std against a direct computation, and the
experiment end to end from a degradation experiment's runs (files, Markdown numbers equal to the CSV, resume)."""

import json

import pytest
import torch
from experiment_checks import PNG_MAGIC, one_thread, read_csv, results_tables, verdict_lines

from resnetlab.cli import main
from resnetlab.experiments import responses
from resnetlab.experiments.comparison import too_short_to_judge
from resnetlab.experiments.response_report import summary_table
from resnetlab.experiments.response_report import verdict_lines as verdict_lines_of
from resnetlab.experiments.responses import layer_response_stds, response_layers
from resnetlab.models import create_model


def test_v1_responses_are_the_bn_after_each_3x3_conv():
    names = [name for name, _ in response_layers(create_model("resnet8", shortcut="C"))]
    assert names == ["bn1", "layer1.0.bn1", "layer1.0.bn2", "layer2.0.bn1", "layer2.0.bn2", "layer3.0.bn1",
                     "layer3.0.bn2"]
    preact = [name for name, _ in response_layers(create_model("preact_resnet8"))]
    assert preact == ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer2.0.conv1", "layer2.0.conv2",
                      "layer3.0.conv1", "layer3.0.conv2"]


def test_std_equals_direct_computation_across_chunks(monkeypatch):
    torch.manual_seed(0)
    model = create_model("plain8", num_classes=3)
    with torch.no_grad():  # trained-looking BN: scales and shifts away from 1 and 0
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.2, 2.0)
                module.bias.uniform_(-1.0, 1.0)
    images = torch.randn(8, 3, 32, 32)
    monkeypatch.setattr(responses, "CHUNK", 3)  # 3 + 3 + 2 images: the sums must add up across chunks
    model.train()
    stats = layer_response_stds(model, images)
    assert model.training  # measured in eval mode, handed back in the mode it came in
    outputs = {}
    model.eval()
    hooks = [module.register_forward_hook(lambda m, i, o, name=name: outputs.__setitem__(name, o.detach().clone()))
             for name, module in response_layers(model)]
    with torch.no_grad():
        model(images)
    for hook in hooks:
        hook.remove()
    assert [s["layer"] for s in stats] == list(outputs)
    for stat in stats:
        output = outputs[stat["layer"]].double()
        assert stat["std"] == pytest.approx(float(output.std(unbiased=False)), rel=1e-9)
        channel = output.transpose(0, 1).flatten(1).std(dim=1, unbiased=False).mean()
        assert stat["channel_std"] == pytest.approx(float(channel), rel=1e-9)


@pytest.fixture(scope="module")
def responses_dir(degradation_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("responses") / "exp"
    with one_thread():
        assert main(["experiment", "responses", "--from", str(degradation_dir), "--images", "20",
                     "--out", str(out)]) == 0
    return out


def test_response_experiment_files_and_numbers(responses_dir):
    assert (responses_dir / "responses.png").read_bytes()[:8] == PNG_MAGIC
    record = json.loads((responses_dir / "experiment.json").read_text())
    assert record["kind"] == "responses" and record["status"] == "finished"
    markdown, rows = results_tables(responses_dir)
    assert [row["model"] for row in rows] == ["plain8", "resnet8", "plain14", "resnet14"]
    for shown, row in zip(markdown, rows):
        assert shown["model"] == row["label"] and shown["3x3 layers"] == row["layers"]
        assert shown["mean std"] == row["mean_std"] and shown["max std"] == row["max_std"]
    assert [row["layers"] for row in rows] == ["7", "7", "13", "13"]
    per_layer = [r for r in read_csv(responses_dir / "responses.csv") if r["model"] == "plain8"]
    mean = sum(float(r["std"]) for r in per_layer) / len(per_layer)
    assert abs(mean - float(rows[0]["mean_std"])) < 1e-4
    assert sorted(int(r["rank_by_std"]) for r in per_layer) == list(range(1, 8))
    lines = verdict_lines(responses_dir)
    steps = {json.loads(path.read_text())["step"] for path in (responses_dir / "models").glob("*8-*.json")}
    assert len(steps) == 1  # plain-8 and ResNet-8 trained equally long: far too short to judge the paper's claim
    assert lines[0] == (f"ResNet-8 responses smaller than plain-8's (mean std over layers): "
                        f"{too_short_to_judge(steps.pop())}, {rows[1]['mean_std']} vs {rows[0]['mean_std']}")
    assert lines[-1].startswith("ResNet-14 responses smaller than ResNet-8's (mean std over layers): too short to judge")


def test_response_verdicts_answer_for_nets_trained_long_enough():
    def result(run, model, stds):
        return {"run": run, "model": model, "layers": [{"std": s, "channel_std": s} for s in stds]}

    results = [result("p20", "plain20", [1.0, 2.0]), result("r20", "resnet20", [0.5, 1.0]),
               result("p56", "plain56", [1.0, 1.0]), result("r56", "resnet56", [2.0, 2.0])]
    table = summary_table(results)
    long_enough = verdict_lines_of(table, {"p20": 64_000, "r20": 64_000, "p56": 6_400, "r56": 6_400})
    assert long_enough == ["ResNet-20 responses smaller than plain-20's (mean std over layers): yes, 0.7500 vs 1.5000",
                           "ResNet-56 responses smaller than plain-56's (mean std over layers): no, 2.0000 vs 1.0000",
                           "ResNet-56 responses smaller than ResNet-20's (mean std over layers): no, 2.0000 vs 0.7500"]
    short = verdict_lines_of(table, {"p20": 64_000, "r20": 6_399, "p56": 6_400, "r56": 6_400})
    assert short[0].endswith(f"{too_short_to_judge(6_399)}, 0.7500 vs 1.5000")
    assert short[1].endswith(": no, 2.0000 vs 1.0000")
    assert short[2].startswith("ResNet-56 responses smaller than ResNet-20's (mean std over layers): too short")


def test_response_experiment_keeps_measured_runs(responses_dir, degradation_dir, monkeypatch, capsys):
    def no_loading(*args, **kwargs):
        raise AssertionError("a measured run was loaded again")

    monkeypatch.setattr("resnetlab.train.inference.load_trained", no_loading)
    assert main(["experiment", "responses", "--from", str(degradation_dir), "--images", "20",
                 "--out", str(responses_dir)]) == 0
    assert capsys.readouterr().out.count("measured earlier, kept") == 4


def test_responses_need_runs(tmp_path, capsys):
    assert main(["experiment", "responses", "--out", str(tmp_path / "exp")]) == 2
    assert "--runs" in capsys.readouterr().err
