"""`resnetlab summary` and the summary it prints."""

import json

import pytest

from resnetlab.cli import main
from resnetlab.models import create_model
from resnetlab.models.summary import summarize


def test_resnet20_macs_about_41m():
    summary = summarize(create_model("resnet20"), (3, 32, 32))
    assert 40e6 < summary.macs < 42e6
    assert summary.trainable_params == 269_722
    assert summary.bn_running_stats == 2 * sum(m.num_features for m in create_model("resnet20").modules()
                                               if m.__class__.__name__ == "BatchNorm2d")
    assert summary.layers[-1].name == "fc" and summary.layers[-1].output_shape == [1, 10]


def test_summary_cli_prints_table(capsys):
    assert main(["summary", "resnet20"]) == 0
    out = capsys.readouterr().out
    assert "layer3.2.conv2 (Conv2d)" in out and "(None, 64, 8, 8)" in out
    assert "Trainable params: 269,722" in out and "MACs" in out and "Activation memory" in out


def test_summary_prints_keras_order_on_request_and_a_readable_paper_footer(capsys):
    assert main(["summary", "resnet20", "--channels-last"]) == 0
    out = capsys.readouterr().out
    assert "conv1 (Conv2d)" in out and "(None, 32, 32, 16)" in out and "(None, 8, 8, 64)" in out
    assert out.strip().splitlines()[-1] == ("In the paper (He et al. 2015, Deep Residual Learning, Table 6 (option A)):"
                                            " 0.27M parameters (this model: 269,722), 8.75 % test error on CIFAR-10.")
    assert main(["summary", "keras_resnet20v1"]) == 0  # the tutorial's models print the tutorial's order
    assert "(None, 32, 32, 16)" in capsys.readouterr().out


def test_list_shows_the_models_own_parameter_count_beside_the_papers(capsys):
    assert main(["list", "resnet1*"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["resnet110"][3:5] == ["1.73M", "1.70M"] and rows["resnet18_cifar"][3:5] == ["11.17M", "-"]
    assert main(["list", "resnet20", "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["params"] == 269_722 and entry["paper_params"] == 0.27e6


def test_summary_cli_json(capsys):
    assert main(["summary", "keras_resnet20v1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total_params"] == 274_442 and data["trainable_params"] == 273_066
    assert data["input_shape"] == [3, 32, 32] and data["macs"] > 0


def test_summary_cli_custom_input(capsys):
    assert main(["summary", "resnet18", "--input", "3x64x64", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["input_shape"] == [3, 64, 64]


@pytest.mark.parametrize("argv, message", [(["summary", "resnet21"], "6n+2"),
                                           (["summary", "resnt56"], "did you mean")])
def test_bad_model_is_one_line_and_exit_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["summary", "resnet20", "--input", "1x32x32"],
     "resnet20 takes 3-channel (RGB) images, not 1: give --input 3x32x32"),
    (["summary", "keras_resnet20v1", "--input", "3x16x16"],
     "keras_resnet20v1 cannot take 3x16x16 input (Given input size"),
    (["summary", "resnet20", "--num-classes", "0"], "num_classes must be a positive integer, got 0"),
    (["summary", "plain20", "--shortcut", "B"], "plain20 is a plain net: it has no shortcuts"),
])
def test_summary_refuses_what_the_model_cannot_take_in_one_line(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("pattern, message", [
    ("nothing*", "no model matches 'nothing*'"),
    ("resnet-20", "unknown model 'resnet-20'; did you mean resnet20"),
    ("resnet21", "depth 21 is not of the form 6n+2"),
])
def test_list_of_nothing_is_an_error_with_a_way_forward(capsys, pattern, message):
    assert main(["list", pattern]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and len(captured.err.strip().splitlines()) == 1 and captured.out == ""


def test_list_of_a_valid_unregistered_name_shows_it(capsys):
    assert main(["list", "resnet8", "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["name"] == "resnet8" and entry["depth"] == 8 and entry["params"] == 75_290
