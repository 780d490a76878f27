"""A tiny degradation experiment shared by the experiment tests (plain/ResNet 8 and 14, one epoch of tiny data)."""

import pytest
from experiment_checks import one_thread

from resnetlab.cli import main

TINY_FLAGS = ["--epochs", "1", "--batch-size", "16", "--val-split", "0", "--deterministic", "--quiet"]


@pytest.fixture(autouse=True)
def single_thread():
    with one_thread():
        yield


@pytest.fixture(scope="session")
def degradation_dir(tmp_path_factory, tiny_data):
    """``resnetlab experiment degradation --depths 8,14`` run once through the CLI."""
    out = tmp_path_factory.mktemp("experiments") / "degradation"
    with pytest.MonkeyPatch.context() as patch, one_thread():
        patch.setenv("RESNETLAB_CACHE", str(tmp_path_factory.mktemp("experiment-cache")))
        patch.delenv("RESNETLAB_DATA", raising=False)
        assert main(["experiment", "degradation", "--depths", "8,14", "--data", str(tiny_data), "--out", str(out),
                     *TINY_FLAGS]) == 0
    return out
