"""Bad input to the experiment commands: one line, exit 2, nothing written, so that the corrected command runs; and
no setting the sweep decides itself is taken and then silently dropped."""

import json

import pytest

from resnetlab.cli import main
from resnetlab.errors import UserError
from resnetlab.experiments.records import check_rerun
from resnetlab.experiments.responses import runs_from_experiment

TINY_FLAGS = ["--epochs", "1", "--batch-size", "16", "--val-split", "0", "--quiet"]


def refused(argv, capsys, *expected):
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in err, err


def test_a_typo_writes_nothing_and_the_corrected_command_runs(tiny_data, tmp_path, capsys):
    out = tmp_path / "exp"
    degradation = ["experiment", "degradation", "--depths", "8", "--out", str(out), *TINY_FLAGS]
    refused([*degradation, "--data", str(tmp_path / "typo")], capsys, f"data source not found: {tmp_path / 'typo'}")
    refused([*degradation, "--data", str(tiny_data), "--device", "tpu"], capsys, "unknown device 'tpu'")
    assert not out.exists()
    assert main([*degradation, "--data", str(tiny_data)]) == 0
    assert json.loads((out / "experiment.json").read_text())["status"] == "finished"


def test_the_record_of_an_attempt_that_trained_nothing_is_no_obstacle(tmp_path):
    (tmp_path / "experiment.json").write_text(json.dumps({"kind": "degradation", "status": "interrupted",
                                                          "config": {"data": "old"}, "arguments": {}}))
    check_rerun(tmp_path, "degradation", {"data": "new"}, {})
    (tmp_path / "runs" / "plain8-seed0" / "checkpoints" / "step-00000004").mkdir(parents=True)
    with pytest.raises(UserError, match=r"was made with other settings \(data differ\)"):
        check_rerun(tmp_path, "degradation", {"data": "new"}, {})


@pytest.mark.parametrize("change, message", [
    (["--batch-size", "0"], "batch size must be positive, got 0"),
    (["--lr", "-1"], "lr must be positive, got -1.0"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--data", "MISSING"], "data source not found: MISSING"),
])
def test_gradients_refuse_bad_settings_before_writing(tiny_data, tmp_path, capsys, change, message):
    missing = str(tmp_path / "missing")
    change = [missing if part == "MISSING" else part for part in change]
    out = tmp_path / "gradients"
    argv = ["experiment", "gradients", "--models", "plain8", "--steps", "1", "--batches", "1", "--batch-size", "4",
            "--data", str(tiny_data), "--device", "cpu", "--out", str(out)]
    refused([*argv, *change], capsys, message.replace("MISSING", missing))
    assert not out.exists()


def test_responses_refuse_runs_that_are_not_there_before_writing(tmp_path, capsys):
    (tmp_path / "untrained" / "checkpoints").mkdir(parents=True)
    (tmp_path / "folder").mkdir()
    out = tmp_path / "responses"
    for run, message in ((tmp_path / "missing", "no such run directory or checkpoint"),
                         (tmp_path / "untrained", "no checkpoint yet"),
                         (tmp_path / "folder", "neither a run directory")):
        refused(["experiment", "responses", "--runs", str(run), "--out", str(out)], capsys, f"{run}: {message}")
        assert not out.exists()


def test_responses_name_the_seeds_an_experiment_has(tmp_path):
    runs = [{"run_dir": str(tmp_path / f"{name}-seed{seed}"), "seed": seed} for name in ("plain8", "resnet8")
            for seed in (0, 2)]
    (tmp_path / "experiment.json").write_text(json.dumps({"kind": "degradation", "runs": runs}))
    with pytest.raises(UserError, match=f"{tmp_path} has no runs of seed 5; its seeds: 0, 2"):
        runs_from_experiment(tmp_path, 5)
    assert runs_from_experiment(tmp_path, 2) == [tmp_path / "plain8-seed2", tmp_path / "resnet8-seed2"]


@pytest.mark.parametrize("given, message", [
    (["--set", "model=resnet56"], "model is chosen by --depths in this experiment; drop it from --set"),
    (["--set", "seed=3"], "seed is chosen by --seeds in this experiment; drop it from --set"),
    (["--config", "CONFIG"], "model is chosen by --depths in this experiment; drop it from --config CONFIG"),
])
def test_settings_the_sweep_chooses_itself_are_refused(tiny_data, tmp_path, capsys, given, message):
    config = tmp_path / "c56.toml"
    config.write_text('model = "resnet56"\n')
    given = [str(config) if part == "CONFIG" else part for part in given]
    out = tmp_path / "exp"
    refused(["experiment", "degradation", "--depths", "8", "--data", str(tiny_data), "--out", str(out),
             *TINY_FLAGS, *given], capsys, message.replace("CONFIG", str(config)))
    assert not out.exists()


@pytest.mark.parametrize("flag, value, message", [
    ("--depths", "-4", "depths are positive 6n+2 numbers (20, 32, 44, 56...), got -4"),
    ("--seeds", "1,0,1", "seed 1 is given twice"),
])
def test_depths_and_seeds_are_checked_as_they_are_parsed(tmp_path, capsys, flag, value, message):
    with pytest.raises(SystemExit) as exit_:
        main(["experiment", "degradation", "--data", "synthetic", "--iterations", "1", "--batch-size", "8",
              "--val-split", "0", "--quiet", "--out", str(tmp_path / "x"), "--depths", "8", f"{flag}={value}"])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_a_missing_path_in_resnetlab_data_is_named_with_the_variable(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RESNETLAB_DATA", str(tmp_path / "nope"))
    refused(["experiment", "degradation", "--depths", "8", "--out", str(tmp_path / "exp"), *TINY_FLAGS], capsys,
            f"$RESNETLAB_DATA={tmp_path / 'nope'}: no such path")
    refused(["experiment", "gradients", "--models", "plain8", "--out", str(tmp_path / "gradients")], capsys,
            f"$RESNETLAB_DATA={tmp_path / 'nope'}: no such path")
    assert not (tmp_path / "exp").exists() and not (tmp_path / "gradients").exists()
