"""The degradation experiment (DRL Figure 6, Table 6) end to end on tiny data: its files, Markdown numbers equal to
the CSV's, verdicts that follow the table, and a sweep that resumes after a crash without retraining."""

import json
from pathlib import Path

import pytest
import torch
from experiment_checks import PNG_MAGIC, assert_error_table_matches, read_csv, verdict_lines

from resnetlab.cli import main
from resnetlab.errors import UserError
from resnetlab.experiments import sweep
from resnetlab.experiments.degradation import degradation_comparison, run_degradation
from resnetlab.train.config import resolve_config
from resnetlab.train.history import read_history
from resnetlab.train.loop import TrainingStopped


def tiny_base(data, **changes):
    values = {"data": str(data), "epochs": 1, "iterations": 0, "val_split": 0, "batch_size": 16, "deterministic": True,
                  "tensorboard": False}
    return resolve_config("paper", overrides={**values, **changes})


def quiet(_: str) -> None:
    pass


def test_writes_figure_tables_and_record(degradation_dir):
    for name in ("degradation.png", "degradation.csv", "results.md", "results.csv", "runs.csv", "verdicts.csv"):
        assert (degradation_dir / name).stat().st_size > 0, name
    assert (degradation_dir / "degradation.png").read_bytes()[:8] == PNG_MAGIC
    record = json.loads((degradation_dir / "experiment.json").read_text())
    assert record["kind"] == "degradation" and record["status"] == "finished"
    assert [run["name"] for run in record["runs"]] == ["plain8-seed0", "resnet8-seed0", "plain14-seed0",
                                                       "resnet14-seed0"]
    assert record["environment"]["torch"] == torch.__version__
    assert record["config"]["epochs"] == 1 and record["config"]["batch_size"] == 16
    assert record["arguments"]["command"].startswith("resnetlab experiment degradation --depths 8,14")
    text = (degradation_dir / "results.md").read_text()
    assert "## Setup" in text and "![" in text and "(degradation.png)" in text and "option A" in text


def test_markdown_numbers_equal_csv_and_history(degradation_dir):
    rows = {row["group"]: row for row in assert_error_table_matches(degradation_dir)}
    assert rows["plain8"]["paper_source"] == "Figure 6 only" and rows["resnet8"]["paper_test_error_pct"] == ""
    for group, row in rows.items():
        last = read_history(degradation_dir / "runs" / f"{group}-seed0")[-1]
        assert row["train_error_pct"] == f"{100 * last['train_error']:.2f}"
        assert row["test_error_pct"] == f"{100 * last['test_error']:.2f}"
    curves = read_csv(degradation_dir / "degradation.csv")
    assert {c["group"] for c in curves} == set(rows) and all(c["step"] == "4" for c in curves)


def test_verdicts_follow_the_table(degradation_dir):
    rows = {row["label"]: row for row in read_csv(degradation_dir / "results.csv")}
    lines = verdict_lines(degradation_dir)
    assert len(lines) == 6
    deep, shallow = rows["plain-14"]["train_error_pct"], rows["plain-8"]["train_error_pct"]
    short = "too short to judge (4 iterations; a verdict needs at least 6,400, a tenth of the paper's 64,000)"
    assert lines[0] == f"plain-14 train error > plain-8: {short}, {deep} % vs {shallow} %"
    assert lines[-1].startswith("ResNet-14 test error < plain-14: ")
    table = read_csv(degradation_dir / "verdicts.csv")
    assert [line.split(":")[0] for line in lines] == [row["claim"] for row in table]
    assert all(row["holds"] == short for row in table)


def test_paper_numbers_and_claims_of_table6(tiny_data):
    comparison = degradation_comparison([56, 20, 32], [0, 1], tiny_base(tiny_data))
    assert comparison.paper["resnet56"] == ("6.97", "DRL Table 6")
    assert comparison.paper["plain20"] == ("", "Figure 6 only")
    assert len(comparison.specs) == 12 and comparison.specs[0].name == "plain20-seed0"
    first = comparison.claims[0]
    assert (first.left, first.split, first.relation, first.right) == ("plain56", "train", ">", "plain20")
    assert comparison.colours["plain32"] == comparison.colours["resnet32"]


def test_resumes_after_a_crash_without_retraining(tiny_data, tmp_path, monkeypatch):
    base, out, calls, crash = tiny_base(tiny_data), tmp_path / "exp", [], {"at": 2}
    real_fit = sweep.fit

    def crashing_fit(config, run_dir, **kwargs):
        calls.append(Path(run_dir).name)
        if len(calls) == crash["at"]:
            raise RuntimeError("simulated crash")
        return real_fit(config, run_dir, **kwargs)

    monkeypatch.setattr(sweep, "fit", crashing_fit)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_degradation([8], [0, 1], out, base, {"recipe": "paper"}, log=quiet, show_progress=False)
    assert json.loads((out / "experiment.json").read_text())["status"] == "interrupted"
    finished = out / "runs" / "plain8-seed0" / "results.json"
    stamp = finished.stat().st_mtime_ns

    calls.clear()
    crash["at"] = 0
    result = run_degradation([8], [0, 1], out, base, {"recipe": "paper"}, log=quiet, show_progress=False)
    assert calls == ["plain8-seed1", "resnet8-seed0", "resnet8-seed1"]
    assert finished.stat().st_mtime_ns == stamp
    rows = assert_error_table_matches(out)
    assert [row["seeds"] for row in rows] == ["2", "2"]
    assert "±" in (out / "results.md").read_text().split("## Results")[1]
    resnet, plain = ({row["group"]: row for row in rows}[name] for name in ("resnet8", "plain8"))
    gap = abs(float(resnet["test_error_pct"]) - float(plain["test_error_pct"]))
    widest = max(float(resnet["test_error_std"]), float(plain["test_error_std"]))
    within = 0 < widest and gap <= widest  # two seeds each: the spread rule applies
    (verdict,) = read_csv(out / "verdicts.csv")
    assert verdict["claim"] == "ResNet-8 test error < plain-8" and verdict["within_seed_spread"] == str(within).lower()
    assert verdict_lines(out)[0].endswith("within the seed-to-seed std: not conclusive)") is within

    calls.clear()
    again = run_degradation([8], [0, 1], out, base, {"recipe": "paper"}, log=quiet, show_progress=False)
    assert calls == [] and again["results"] == result["results"]
    with pytest.raises(UserError, match="other settings.*lr"):
        run_degradation([8], [0, 1], out, tiny_base(tiny_data, lr=0.05), {"recipe": "paper"}, log=quiet)


def test_stop_request_says_how_to_continue(tiny_data, tmp_path, monkeypatch, capsys):
    def stopped_fit(config, run_dir, **kwargs):
        raise TrainingStopped(Path(run_dir), 3)

    monkeypatch.setattr(sweep, "fit", stopped_fit)
    code = main(["experiment", "degradation", "--depths", "8", "--data", str(tiny_data), "--out",
                 str(tmp_path / "exp"), "--epochs", "1", "--quiet"])
    assert code == 130
    assert "rerun the same command to continue the sweep" in capsys.readouterr().err


def test_bad_depth_is_a_one_line_error(tiny_data, tmp_path, capsys):
    assert main(["experiment", "degradation", "--depths", "8,21", "--data", str(tiny_data), "--out",
                 str(tmp_path / "exp"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "21" in err and "6n+2" in err and len(err.strip().splitlines()) == 1


def test_error_axis_fits_the_curves_instead_of_0_to_100():
    from resnetlab.plots import error_limits

    low, high = error_limits(60.0, 90.0, longest=250)
    assert 57 < low < 60 and 90 < high < 93
    assert error_limits(5.0, 18.0, longest=64_000) == (0.0, 20.0)  # the paper's range when the curves fit it
    assert error_limits(5.0, 40.0, longest=64_000)[1] < 43
