"""resnetlab's ImageNet ResNets are torchvision-compatible, checked against a committed fixture.

tests/fixtures/torchvision holds torchvision's state-dict keys/shapes for resnet18..152 and its
eval-mode logits for resnet18/resnet50 under deterministic weights (see its README), so torchvision
is not needed here.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from resnetlab.models import create_model

TESTS = Path(__file__).resolve().parents[1]
FIXTURE = TESTS / "fixtures" / "torchvision"
ARCHS = ("resnet18", "resnet34", "resnet50", pytest.param("resnet101", marks=pytest.mark.slow),
         pytest.param("resnet152", marks=pytest.mark.slow))
FORWARD_ARCHS = ("resnet18", "resnet50")


def _deterministic_state(shapes):
    # Loaded by path (the fixture generator does the same), so pytest's import mode doesn't matter.
    spec = importlib.util.spec_from_file_location("resnetlab_tests_weight_fill", TESTS / "models" / "weight_fill.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.deterministic_state(shapes)


@pytest.fixture(scope="module")
def torchvision_shapes() -> dict[str, list[tuple[str, tuple[int, ...]]]]:
    raw = json.loads((FIXTURE / "state_dict_shapes.json").read_text())
    return {arch: [(key, tuple(shape)) for key, shape in entries] for arch, entries in raw.items()}


@pytest.fixture(scope="module")
def torchvision_outputs() -> dict[str, np.ndarray]:
    with np.load(FIXTURE / "outputs.npz") as data:
        return {name: data[name] for name in data.files}


@pytest.mark.parametrize("arch", ARCHS)
def test_state_dict_matches_torchvision(arch, torchvision_shapes):
    model = create_model(arch)
    ours = [(key, tuple(t.shape)) for key, t in model.state_dict().items()]
    assert ours == torchvision_shapes[arch]


@pytest.mark.parametrize("arch", FORWARD_ARCHS)
def test_logits_match_torchvision(arch, torchvision_shapes, torchvision_outputs):
    model = create_model(arch)
    model.load_state_dict(_deterministic_state(dict(torchvision_shapes[arch])), strict=True)
    model.eval()
    x = torch.from_numpy(torchvision_outputs["input"])
    with torch.no_grad():
        logits = model(x)
    torch.testing.assert_close(logits, torch.from_numpy(torchvision_outputs[arch]), atol=1e-4, rtol=1e-4)
