"""The registry: every model builds, runs forward and backward, and errors are clear."""

import numpy as np
import pytest
import torch

from resnetlab.errors import UserError
from resnetlab.models import ModelInfo, create_model, keras_resnet_v1, keras_resnet_v2, list_models, model_info
from resnetlab.models.registry import register_model

DEEP = {"resnet1202", "resnet1001v2"}
HEAVY = {"resnet101", "resnet152"}  # a few seconds each on 2 cores: in the slow set


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n
                                  for n in list_models() if n not in DEEP])
def test_every_registered_model_runs_forward_and_backward(name):
    info = model_info(name)
    size = 32 if info.input_size == 32 else 64  # ImageNet nets pool adaptively; 64x64 keeps CPU time low
    model = create_model(name, num_classes=7)
    x = torch.randn(2, 3, size, size, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 7)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(DEEP))
def test_very_deep_models_run_forward_and_backward(name):
    model = create_model(name)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_names_of_the_issue_are_registered():
    for name in ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202", "plain20", "plain32",
                 "plain44", "plain56", "plain110", "preact_resnet110", "resnet164v2", "resnet1001v2",
                 "keras_resnet20v1", "keras_resnet29v2", "resnet18", "resnet34", "resnet50", "resnet101",
                 "resnet152", "plain18", "plain34"]:
        assert name in list_models(), name


def test_list_models_pattern_and_natural_order():
    assert list_models("plain*") == ["plain18", "plain20", "plain32", "plain34", "plain44", "plain56", "plain110"]
    assert list_models("nothing*") == []


def test_metadata_carries_paper_numbers():
    info = model_info("resnet110")
    assert info.paper_error == 6.43 and info.paper_params == 1.7e6 and "Table 6" in info.reference
    assert model_info("resnet50").input_size == 224 and model_info("resnet56").num_classes == 10


def test_unknown_name_suggests_close_names():
    with pytest.raises(ValueError, match="did you mean resnet56"):
        create_model("resnt56")


def test_duplicate_registration_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_model(ModelInfo("resnet20", "cifar_v1", keras_resnet_v1, 32, 10))


def test_bad_builder_option_is_a_user_error():
    with pytest.raises(ValueError, match="bad model option"):
        create_model("resnet20", stem="cifar")


@pytest.mark.parametrize("name", ["plain8", "plain18", "cifar_plain20"])
def test_a_plain_net_refuses_a_shortcut_option_it_would_ignore(name):
    with pytest.raises(UserError, match=rf"{name} is a plain net: it has no shortcuts.*got 'B'"):
        create_model(name, shortcut="B")
    assert create_model("resnet8", shortcut="B") is not None


@pytest.mark.parametrize("name", ["resnet8", "resnet11v2", "preact_resnet8", "keras_resnet8v1", "keras_resnet11v2"])
@pytest.mark.parametrize("classes", [0, -3, 2.5, True])
def test_every_family_refuses_a_number_of_classes_that_is_not_positive(name, classes):
    with pytest.raises(UserError, match=rf"{name}: num_classes must be a positive integer, got {classes!r}"):
        create_model(name, num_classes=classes)


def test_a_numpy_integer_is_a_number_of_classes():
    assert create_model("resnet8", num_classes=np.int64(3)).fc.out_features == 3


def state_shapes(model: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(key, tuple(tensor.shape)) for key, tensor in model.state_dict().items()]


def test_unregistered_valid_depths_build_the_depth_they_name():
    assert state_shapes(create_model("keras_resnet8v1")) == state_shapes(keras_resnet_v1(8))
    assert state_shapes(create_model("keras_resnet11v2")) == state_shapes(keras_resnet_v2(11))
