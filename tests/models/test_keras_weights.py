"""load_keras_weights against real Keras: outputs of TensorFlow 2.21 / Keras 3.15 saved in tests/fixtures/keras
(made by make_keras_fixtures.py there)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from resnetlab.errors import CheckpointError, UserError
from resnetlab.models.keras import keras_resnet_v1, keras_resnet_v2
from resnetlab.models.keras_weights import load_keras_weights

h5py = pytest.importorskip("h5py")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "keras"
MODELS = {"keras_resnet_v1_d8": lambda: keras_resnet_v1(8), "keras_resnet_v2_d11": lambda: keras_resnet_v2(11)}


def keras_input() -> torch.Tensor:
    return torch.from_numpy(np.load(FIXTURES / "keras_input.npy")).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
@pytest.mark.parametrize("stem", sorted(MODELS))
def test_outputs_equal_keras(stem, suffix):
    model = load_keras_weights(MODELS[stem](), FIXTURES / f"{stem}{suffix}").eval()
    with torch.no_grad():
        logits = model(keras_input())
    keras_logits = torch.from_numpy(np.load(FIXTURES / f"{stem}_logits.npy"))
    keras_probs = torch.from_numpy(np.load(FIXTURES / f"{stem}_probs.npy"))
    assert (logits - keras_logits).abs().max().item() < 1e-4
    assert (logits.softmax(dim=1) - keras_probs).abs().max().item() < 1e-5


def test_v2_file_order_is_not_creation_order():
    # What makes the v2 case above a real test of the reordering: the file's 4th conv group (model.layers
    # order) is the shortcut, which Keras created 5th.
    with h5py.File(FIXTURES / "keras_resnet_v2_d11.weights.h5", "r") as f:
        assert f["layers/conv2d_3/vars"].attrs["name"] == "conv2d_4"
        assert f["layers/conv2d_3/vars/0"].shape == (1, 1, 16, 64)


def test_other_depth_is_refused():
    with pytest.raises(CheckpointError, match="keras_resnet_v1_d8.weights.h5: .*Conv2D"):
        load_keras_weights(keras_resnet_v1(14), FIXTURES / "keras_resnet_v1_d8.weights.h5")


def test_other_version_is_refused():
    with pytest.raises(CheckpointError, match="keras_resnet_v2_d11.keras"):
        load_keras_weights(keras_resnet_v1(8), FIXTURES / "keras_resnet_v2_d11.keras")


def test_other_num_classes_is_refused_before_copying():
    model = keras_resnet_v1(8, num_classes=100)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"Dense layer 'dense' .* weight \(10, 64\), the model has \(100, 64\)"):
        load_keras_weights(model, FIXTURES / "keras_resnet_v1_d8.weights.h5")
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("name", ["keras_resnet_v1_d8.weights.h5", "keras_resnet_v1_d8.keras"])
def test_truncated_file_is_refused(tmp_path, name):
    data = (FIXTURES / name).read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=name):
        load_keras_weights(keras_resnet_v1(8), path)


def test_garbage_and_missing_files_are_refused(tmp_path):
    garbage = tmp_path / "garbage.weights.h5"
    garbage.write_bytes(b"not an HDF5 file" * 100)
    with pytest.raises(CheckpointError, match="garbage.weights.h5"):
        load_keras_weights(keras_resnet_v1(8), garbage)
    with pytest.raises(CheckpointError, match="missing.keras: no such file"):
        load_keras_weights(keras_resnet_v1(8), tmp_path / "missing.keras")


def test_without_h5py_says_how_to_install(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "h5py", None)
    with pytest.raises(UserError, match=r"pip install 'resnetlab\[keras\]'"):
        load_keras_weights(keras_resnet_v1(8), FIXTURES / "keras_resnet_v1_d8.weights.h5")
