"""Shortcut options A/B/C (DRL Table 3) and v1 vs pre-activation (IM Table 2): the same table, curves and verdicts
as the degradation experiment, with the paper's numbers only where the paper has them."""

import json

import pytest
from experiment_checks import PNG_MAGIC, assert_error_table_matches, one_thread, read_csv, verdict_lines

from resnetlab.cli import main
from resnetlab.experiments.variants import preact_comparison, shortcuts_comparison

TINY = ["--depths", "8", "--epochs", "1", "--batch-size", "16", "--val-split", "0", "--deterministic", "--quiet"]


@pytest.fixture(scope="module")
def variant_dirs(tmp_path_factory, tiny_data):
    root = tmp_path_factory.mktemp("variants")
    with pytest.MonkeyPatch.context() as patch, one_thread():
        patch.setenv("RESNETLAB_CACHE", str(tmp_path_factory.mktemp("variant-cache")))
        assert main(["experiment", "shortcuts", "--data", str(tiny_data), "--out", str(root / "shortcuts"), *TINY]) == 0
        assert main(["experiment", "preact", "--data", str(tiny_data), "--out", str(root / "preact"), *TINY]) == 0
    return root


def test_shortcut_runs_use_their_option(variant_dirs):
    out = variant_dirs / "shortcuts"
    assert (out / "shortcuts.png").read_bytes()[:8] == PNG_MAGIC
    rows = assert_error_table_matches(out)
    assert [row["label"] for row in rows] == ["ResNet-8 (A)", "ResNet-8 (B)", "ResNet-8 (C)"]
    assert rows[1]["paper_source"] == "none on CIFAR: DRL Table 3 is ImageNet"
    for option in "ABC":
        config = (out / "runs" / f"resnet8-{option}-seed0" / "config.toml").read_text()
        assert f'shortcut = "{option}"' in config
    assert [line.split(":")[0] for line in verdict_lines(out)] == ["ResNet-8 (B) test error < ResNet-8 (A)",
                                                                   "ResNet-8 (C) test error < ResNet-8 (B)"]


def test_preact_compares_v1_and_v2(variant_dirs):
    out = variant_dirs / "preact"
    record = json.loads((out / "experiment.json").read_text())
    assert record["kind"] == "preact" and [r["model"] for r in record["runs"]] == ["resnet8", "preact_resnet8"]
    rows = assert_error_table_matches(out)
    assert [row["label"] for row in rows] == ["ResNet-8 (v1)", "pre-act ResNet-8"]
    lines = verdict_lines(out)
    assert len(lines) == 1 and lines[0].startswith("pre-act ResNet-8 test error < ResNet-8 (v1): ")
    assert len(read_csv(out / "preact.csv")) == 2


def test_paper_numbers_where_the_papers_have_them():
    shortcuts = shortcuts_comparison([56], ["C", "A"], [0])
    assert shortcuts.paper["resnet56-A"] == ("6.97", "DRL Table 6 (option A)")
    assert [spec.group for spec in shortcuts.specs] == ["resnet56-A", "resnet56-C"]
    preact = preact_comparison([110], [0])
    assert preact.paper["preact_resnet110"] == ("6.37", "IM Table 2")
    assert preact.paper["resnet110"] == ("6.43", "DRL Table 6")


def test_unknown_shortcut_option_is_refused(tiny_data, tmp_path, capsys):
    assert main(["experiment", "shortcuts", "--options", "A,D", "--data", str(tiny_data), "--out",
                 str(tmp_path / "exp"), "--epochs", "1"]) == 2
    assert "A, B and C" in capsys.readouterr().err
