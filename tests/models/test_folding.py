"""BatchNorm folded into convolutions for inference: same outputs, fewer layers, the original left alone."""

import pytest
import torch
from torch import nn

from resnetlab.errors import UserError
from resnetlab.models import conv_bn_pairs, create_model, fold_batchnorm


def batch_norms(model: nn.Module) -> int:
    return sum(isinstance(module, nn.BatchNorm2d) for module in model.modules())


def with_trained_statistics(model: nn.Module) -> nn.Module:
    """Running statistics and affine parameters far from their initial values, so folding has work to do."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            channels = module.num_features
            module.running_mean.copy_(0.2 * torch.randn(channels, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(channels, generator=generator))
            module.weight.data.copy_(0.5 + torch.rand(channels, generator=generator))
            module.bias.data.copy_(0.1 * torch.randn(channels, generator=generator))
    return model.eval()


@pytest.mark.parametrize("name, kwargs, size, left", [
    ("resnet20", {}, 32, 0),                       # option A: zero-padding shortcuts
    ("resnet20", {"shortcut": "B"}, 32, 0),        # projection shortcuts: conv + BN in the shortcut, folded too
    ("resnet20", {"shortcut": "C"}, 32, 0),
    ("plain20", {}, 32, 0),
    ("resnet50", {}, 64, 0),                       # ImageNet bottleneck with max-pool stem
    ("resnet29v2", {}, 32, 9),                     # pre-activation: the BNs before a block's first conv stay
    ("keras_resnet20v1", {}, 32, 0),               # "same" padding convolutions (a Conv2d subclass)
])
def test_folded_model_gives_the_same_outputs(name, kwargs, size, left):
    torch.manual_seed(0)
    model = with_trained_statistics(create_model(name, **kwargs))
    folded = fold_batchnorm(model)
    x = torch.randn(3, 3, size, size)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(folded(x), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    assert batch_norms(folded) == left
    assert type(folded) is type(model) and not folded.training


def test_the_original_model_is_left_untouched():
    model = create_model("resnet8")
    before = {key: value.clone() for key, value in model.state_dict().items()}
    fold_batchnorm(model)
    assert model.training and batch_norms(model) == 7
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_channels_last_weights_stay_channels_last():
    model = create_model("resnet8").to(memory_format=torch.channels_last)
    folded = fold_batchnorm(model)
    assert folded.layer1[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)


class SharedConvOutput(nn.Module):
    """The convolution's output feeds the BN and the sum: folding the BN into it would change the sum."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


def test_a_convolution_whose_output_is_also_used_elsewhere_is_not_folded():
    model = with_trained_statistics(SharedConvOutput())
    assert conv_bn_pairs(model) == []
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(fold_batchnorm(model)(x), model(x))


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)) if x.sum() > 0 else x


def test_an_untraceable_model_is_refused_with_one_clear_message():
    with pytest.raises(UserError, match="cannot fold BatchNorm in DataDependent"):
        fold_batchnorm(DataDependent())
