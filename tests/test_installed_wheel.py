"""resnetlab as a user installs it: the built wheel, not the source tree. Everything the commands need (the
recipes, the typical-pipeline baseline of ``bench``) must be inside the package."""

import importlib.metadata
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Offline, build with the environment's setuptools when it is new enough for pyproject.toml's build-system;
    # else pip fetches the build backend into an isolated environment.
    isolation = ["--no-build-isolation"] if _setuptools_major() >= 68 else []
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "--quiet", "-w", str(out),
                    str(ROOT)], check=True, timeout=600, env=_clean_env())
    (built,) = out.glob("resnetlab-*.whl")
    return built


def _setuptools_major() -> int:
    try:
        return int(importlib.metadata.version("setuptools").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        return 0


def _clean_env() -> dict[str, str]:
    """No PYTHONPATH: the source tree must not leak into the installed copy."""
    return {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


def test_the_wheel_holds_the_baseline_and_the_recipes(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "resnetlab/typical_pipeline.py" in names
    assert {"resnetlab/train/recipes/paper.toml", "resnetlab/train/recipes/cpu.toml"} <= names


@pytest.mark.slow
def test_bench_and_train_from_the_installed_wheel(wheel, tmp_path):
    """A fresh venv without the source tree: the wheel installed (not editable), its dependencies taken from the
    environment running the tests (torch is not downloaded again), then ``bench`` and ``train`` as a user runs them."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # The test environment's packages (torch, numpy, ...) as plain path entries: .pth files there, such as an
    # editable install of resnetlab, are not processed, so only the wheel provides resnetlab.
    shared = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "shared-dependencies.pth").write_text("\n".join(sorted(shared)) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "--quiet", str(wheel)], check=True, timeout=300, env=_clean_env())
    env = {**_clean_env(), "RESNETLAB_CACHE": str(tmp_path / "cache")}
    where = subprocess.run([str(python), "-c", "import resnetlab; print(resnetlab.__file__)"], capture_output=True,
                           text=True, check=True, cwd=tmp_path, env=env).stdout
    assert where.startswith(str(site)), where
    script = venv / "bin" / "resnetlab"
    bench = subprocess.run([str(script), "bench", "--models", "resnet8", "--batch-sizes", "8", "--steps", "1",
                            "--warmup", "1", "--workers", "0", "--device", "cpu"],
                           capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert bench.returncode == 0, bench.stderr
    assert "baseline" in bench.stdout and "resnetlab" in bench.stdout
    train = subprocess.run([str(script), "train", "--data", "synthetic", "--model", "resnet8", "--iterations", "2",
                            "--batch-size", "8", "--val-split", "0", "--out", "runs/tiny"],
                           capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert train.returncode == 0, train.stderr
    assert "done: runs/tiny" in train.stdout and (tmp_path / "runs" / "tiny" / "results.json").is_file()
