"""Loading a checkpoint for inference: metadata without a field it needs, and weights written for another model,
are refused in one line that names what is missing or differs."""

import json
from pathlib import Path

import pytest
from safetensors.torch import save_file

from resnetlab.cli import main
from resnetlab.errors import CheckpointError
from resnetlab.models import create_model
from resnetlab.train.checkpoint import FORMAT, list_checkpoints, read_weights
from resnetlab.train.inference import load_trained, weights_mismatch


@pytest.fixture
def weights_file(resnet8_run) -> Path:
    """The run's final model.safetensors."""
    return list_checkpoints(resnet8_run)[0] / "model.safetensors"


def crafted(folder: Path, weights_file: Path, *, drop: str = "", tensors_of=None) -> Path:
    """A copy of the weights file without one metadata field, or with the tensors of another model."""
    tensors, metadata = read_weights(weights_file)
    metadata.pop(drop, None)
    tensors = tensors if tensors_of is None else tensors_of.state_dict()
    path = folder / "crafted.safetensors"
    save_file(tensors, path, metadata={"format": FORMAT, "resnetlab": json.dumps(metadata)})
    return path


def test_the_untouched_file_loads(weights_file):
    trained = load_trained(weights_file)
    assert trained.classes == ["cat", "dog", "ship"] and trained.image_size == 8


@pytest.mark.parametrize("field", ["classes", "image_size", "normalizer", "model_kwargs"])
def test_metadata_without_a_field_names_it(weights_file, tmp_path, field):
    with pytest.raises(CheckpointError, match=f"the checkpoint metadata has no '{field}'"):
        load_trained(crafted(tmp_path, weights_file, drop=field))


def test_weights_of_a_deeper_model_name_the_layers_it_lacks(weights_file, tmp_path):
    path = crafted(tmp_path, weights_file, tensors_of=create_model("resnet14", num_classes=3))
    with pytest.raises(CheckpointError, match=r"the metadata says resnet8 \(3 classes\), but the weights do not fit "
                                              r"it: 3 layers only in the file \(layer1\.1, layer2\.1, layer3\.1\); "
                                              r"the file was written for another model"):
        load_trained(path)


def test_weights_of_another_class_count_name_the_shapes(weights_file, tmp_path):
    path = crafted(tmp_path, weights_file, tensors_of=create_model("resnet8", num_classes=5))
    with pytest.raises(CheckpointError, match=r"fc\.weight is \[5, 64\] in the file, \[3, 64\] in the model; "
                                              r"fc\.bias is \[5\] in the file, \[3\] in the model"):
        load_trained(path)


def test_eval_of_weights_for_another_model_is_one_line(weights_file, tmp_path, tiny_data, capsys):
    path = crafted(tmp_path, weights_file, tensors_of=create_model("resnet14", num_classes=3))
    assert main(["eval", str(path), "--data", str(tiny_data)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "the weights do not fit it" in err


def test_weights_of_a_shallower_model_name_the_layers_the_file_lacks():
    problem = weights_mismatch(create_model("resnet14").state_dict(), create_model("resnet8").state_dict())
    assert problem == "3 layers only in the model (layer1.1, layer2.1, layer3.1)"
    assert weights_mismatch(create_model("resnet8").state_dict(), create_model("resnet8").state_dict()) == ""
