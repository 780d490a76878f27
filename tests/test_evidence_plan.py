"""The GPU evidence plan, smoke-sized on the CPU: slices that stop, pack at most 8 files of 16 MiB, and continue
from those files alone on a fresh working folder until every experiment is written and every net published."""

import importlib.util
import json
import os
import shutil
import signal
import sys
import tarfile
from pathlib import Path

import pytest

from resnetlab.models.weights import read_index
from resnetlab.train.history import read_history

PLAN = Path(__file__).resolve().parents[1] / "benchmarks" / "evidence_plan.py"


@pytest.fixture(scope="module")
def plan():
    sys.path.insert(0, str(PLAN.parent))  # its sibling modules, as when it runs as a script
    spec = importlib.util.spec_from_file_location("evidence_plan", PLAN)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def run(plan, tmp_path, tiny_data, name, state=None, stop_on=None):
    """One slice in a fresh working folder; ``stop_on``: SIGTERM the process when a log line starts with it."""
    args = ["--smoke", "--data", str(tiny_data), "--work", str(tmp_path / f"work-{name}"), "--out",
            str(tmp_path / name), *(["--state", str(tmp_path / state)] if state else [])]
    sent = []

    def log(line: str) -> None:
        if stop_on and not sent and stop_on in line:
            sent.append(line)
            os.kill(os.getpid(), signal.SIGTERM)

    assert plan.run_slice(plan.build_parser().parse_args(args), log=log) == 0
    return tmp_path / name, tmp_path / f"work-{name}"


def test_the_plan_runs_in_slices_that_continue_from_their_packed_files(plan, tmp_path, tiny_data):
    out1, work1 = run(plan, tmp_path, tiny_data, "slice1", stop_on="epoch 1/")
    files = sorted(out1.iterdir())
    assert 2 <= len(files) <= 8 and all(f.stat().st_size <= 16 * 2**20 for f in files)
    record = json.loads((work1 / "plan.json").read_text())
    assert record["waves"][0]["stopped"] and record["slices"][0]["remaining_runs"]
    stopped_run = next(r["run"] for r in record["waves"][0]["runs"] if r["steps"] and r["steps"] < 6)
    assert set(record["baseline"]["models"]) >= {"plain8", "resnet20", "resnet11v2"}

    out2, work2 = run(plan, tmp_path, tiny_data, "slice2", state="slice1")
    record = json.loads((work2 / "plan.json").read_text())
    assert record["stages_done"] == ["fig6", "table6", "fig7", "im", "seeds"]
    assert len(record["slices"]) == 2 and not record["slices"][1]["remaining_runs"]
    history = read_history(work2 / "runs" / stopped_run)
    assert history[-1]["step"] == 6  # resumed, not restarted: one row per epoch, the last at the end
    assert [row["step"] for row in history] == [3, 6]

    for name in ("fig6/degradation.png", "table6/results.md", "fig7/responses.png", "im/results.md",
                 "seeds/results.csv", "report.md"):
        assert (work2 / name).is_file(), name
    table6 = (work2 / "table6" / "results.md").read_text()
    assert "ResNet-20" in table6 and "plain-8" in table6
    with tarfile.open(out2 / "results.tar") as archive:
        assert "table6/results.md" in archive.getnames() and "plan.json" in archive.getnames()

    published = {}
    for out in (out1, out2):
        for archive_path in sorted(out.glob("weights-*.tar")):
            with tarfile.open(archive_path) as archive:
                archive.extractall(tmp_path / "published", filter="data")
    published = read_index(tmp_path / "published" / "weights")
    assert sorted(published) == sorted(f"{m}.cifar10" for m in ("plain8", "resnet8", "plain14", "resnet14",
                                                                 "plain20", "resnet20", "resnet11v2"))
    assert all(r["data"].startswith("CIFAR-10, the JPEG copy") for r in published.values())
    # finished runs travel without their checkpoints once nothing reads them any more
    with tarfile.open(sorted(out2.glob("state-*.tar"))[0]) as archive:
        assert not [n for n in archive.getnames() if "checkpoints" in n]


def test_weights_published_in_one_slice_come_back_once_and_the_next_slice_continues(plan, tmp_path, tiny_data):
    """The next slice gets only state-*.tar back (benchmarks/README.md: the weights are kept apart), so it must know
    that the nets published before it have been packed already, and neither pack them again nor look for them."""
    out1, _ = run(plan, tmp_path, tiny_data, "slice1", stop_on="published ")
    with tarfile.open(next(out1.glob("weights-*.tar"))) as archive:
        first = {n for n in archive.getnames() if n.endswith(".safetensors")}
    assert first
    (tmp_path / "state1").mkdir()
    for archive_path in out1.glob("state-*.tar"):
        shutil.copy(archive_path, tmp_path / "state1")
    out2, work2 = run(plan, tmp_path, tiny_data, "slice2", state="state1")
    record = json.loads((work2 / "plan.json").read_text())
    assert record["stages_done"] == ["fig6", "table6", "fig7", "im", "seeds"]
    later = set()
    for archive_path in out2.glob("weights-*.tar"):
        with tarfile.open(archive_path) as archive:
            later |= {n for n in archive.getnames() if n.endswith(".safetensors")}
    assert later and not later & first
    assert len(first | later) == 7 == len(read_index(work2 / "weights"))
