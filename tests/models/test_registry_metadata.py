"""Names that mean one thing: every entry's metadata, twins, and names refused as ambiguous."""

import pytest

from resnetlab.errors import UserError
from resnetlab.models import create_model, list_models, model_info
from resnetlab.models.resnet import ResNet


@pytest.mark.parametrize("name", list_models())
def test_every_entry_has_explicit_metadata(name):
    info = model_info(name)
    assert info.depth > 0 and info.input_size in (32, 224) and info.family
    if info.twin:
        twin = model_info(info.twin)
        assert twin.twin == name and twin.depth == info.depth and twin.residual != info.residual
        assert twin.input_size == info.input_size


def test_metadata_of_the_papers_nets():
    assert (model_info("resnet110").family, model_info("resnet110").depth, model_info("resnet110").twin) == (
        "cifar_v1", 110, "plain110")
    assert not model_info("plain56").residual and model_info("plain56").twin == "resnet56"
    assert model_info("resnet50").family == "imagenet" and model_info("resnet50").twin == ""
    assert model_info("plain34").input_size == 224 and model_info("plain34").twin == "resnet34"
    assert model_info("resnet164v2").depth == 164 and model_info("keras_resnet20v1").depth == 20
    assert model_info("resnet8").twin == "plain8" and model_info("plain8").depth == 8  # built on the fly


@pytest.mark.parametrize("name, paper_model, cifar_name", [
    ("resnet200", "IM paper's ResNet-200 is an ImageNet model", "cifar_resnet200"),
    ("resnet200v2", "IM paper's ResNet-200 is an ImageNet model", "cifar_resnet200v2"),
    ("plain50", "DRL paper's ResNet-50 is an ImageNet model (resnet50", "cifar_plain50"),
    ("plain152", "DRL paper's ResNet-152 is an ImageNet model (resnet152", "cifar_plain152"),
    ("preact_resnet50", "ResNet-50 is an ImageNet model", "cifar_preact_resnet50"),
])
def test_ambiguous_names_are_refused_naming_both_choices(name, paper_model, cifar_name):
    with pytest.raises(UserError) as error:
        model_info(name)
    message = str(error.value)
    assert f"{name} is ambiguous" in message and paper_model in message and f"use {cifar_name}" in message
    info = model_info(cifar_name)  # the way forward works
    assert info.input_size == 32 and info.family.startswith("cifar")


def test_cifar_prefix_always_means_the_cifar_family():
    model = create_model("cifar_resnet50")
    assert isinstance(model, ResNet) and model.conv1.kernel_size == (3, 3) and len(model.layer1) == 8
    assert model_info("cifar_resnet50").twin == "cifar_plain50"
    assert not model_info("cifar_plain50").residual
    assert model_info("cifar_resnet20").paper_error == model_info("resnet20").paper_error  # the same entry
    assert model_info("resnet50").input_size == 224  # the unprefixed name stays the paper's ImageNet model
    with pytest.raises(UserError, match="unknown model"):
        model_info("cifar_keras_resnet20v1")
