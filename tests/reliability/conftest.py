"""Fixtures for the reliability tests: one tiny trained run to copy and damage."""

import shutil
from pathlib import Path

import pytest
from reliability_helpers import TINY

from resnetlab.cli import main


@pytest.fixture(scope="session")
def trained_tiny_run(tiny_data, tmp_path_factory) -> Path:
    """A finished 2-epoch run (checkpoints step-3, step-6 and a best one). Copy it before changing it."""
    run = tmp_path_factory.mktemp("reliability") / "run"
    assert main(["train", "--data", str(tiny_data), "--out", str(run), "--epochs", "2", *TINY]) == 0
    return run


@pytest.fixture
def tiny_run(trained_tiny_run, tmp_path) -> Path:
    """A private copy of the trained run."""
    return Path(shutil.copytree(trained_tiny_run, tmp_path / "run"))

