"""CIFAR nets as the authors' code builds them: resnet-pre-act.lua (KaimingHe/resnet-1k-layers) for IM's
ResNet-164/1001, and its linear-layer initialisation for the CIFAR v1 nets."""

import math

import pytest
import torch
from torch import nn

from resnetlab.models import create_model
from resnetlab.models.blocks import PreActBottleneck
from resnetlab.models.preact import preact_bottleneck_resnet


def _downsampling_units(model):
    return [m for m in model.modules() if isinstance(m, PreActBottleneck) and m.downsample is not None]


def test_preact_stride_on_the_first_1x1_of_a_downsampling_unit():
    model = create_model("resnet164v2")
    units = _downsampling_units(model)
    assert len(units) == 3  # the first unit of each stage
    assert [u.conv1.stride for u in units] == [(1, 1), (2, 2), (2, 2)]
    assert all(u.conv2.stride == (1, 1) and u.conv1.kernel_size == (1, 1) for u in units)
    assert sum(p.numel() for p in model.parameters()) == 1_703_258  # the placement changes no parameter count
    other = preact_bottleneck_resnet(164, stride_in_1x1=False)
    assert [u.conv2.stride for u in _downsampling_units(other)] == [(1, 1), (2, 2), (2, 2)]
    assert all(u.conv1.stride == (1, 1) for u in _downsampling_units(other))
    x = torch.randn(2, 3, 32, 32)
    assert model.eval()(x).shape == other.eval()(x).shape == (2, 10)


@pytest.mark.parametrize("name", ["resnet164v2", "resnet56"])
def test_conv_init_and_linear_bias_as_the_authors_code(name):
    torch.manual_seed(0)
    model = create_model(name)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    big = max(convs, key=lambda m: m.weight.numel())
    k, out = big.kernel_size[0], big.out_channels
    assert big.weight.std().item() == pytest.approx(math.sqrt(2 / (k * k * out)), rel=0.05)  # normal(0, sqrt(2/n))
    assert torch.all(model.fc.bias == 0)
    bound = 1 / math.sqrt(model.fc.in_features)  # Torch's (and PyTorch's) default linear weights
    assert model.fc.weight.abs().max() <= bound and model.fc.weight.abs().max() > 0.8 * bound
