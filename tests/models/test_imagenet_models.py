"""ImageNet ResNets: the papers' parameter counts and multiply-adds, the stride placement, zero-init, CIFAR stem."""

import pytest
import torch

from resnetlab.models import Bottleneck, create_model
from resnetlab.models.summary import summarize

PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}
PAPER_GMACS = {18: 1.8, 34: 3.6, 50: 3.8, 101: 7.6, 152: 11.3}  # DRL Table 1, "FLOPs" = multiply-adds


@pytest.mark.parametrize("depth", sorted(PARAMS))
def test_params_and_macs_match_table1(depth):
    model = create_model(f"resnet{depth}", stride_in_1x1=True)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[depth]
    macs = summarize(model, (3, 224, 224)).macs
    assert abs(macs / 1e9 - PAPER_GMACS[depth]) / PAPER_GMACS[depth] < 0.03


def test_stride_placement_switch():
    paper = create_model("resnet50", stride_in_1x1=True).layer2[0]
    torchvision_style = create_model("resnet50").layer2[0]
    assert isinstance(paper, Bottleneck)
    assert paper.conv1.stride == (2, 2) and paper.conv2.stride == (1, 1)
    assert torchvision_style.conv1.stride == (1, 1) and torchvision_style.conv2.stride == (2, 2)


def test_zero_init_residual_makes_each_block_start_as_identity():
    model = create_model("resnet18", zero_init_residual=True).eval()
    block = model.layer1[1]
    assert torch.count_nonzero(block.bn2.weight) == 0
    x = torch.rand(2, 64, 8, 8)  # non-negative, as after a ReLU
    torch.testing.assert_close(block(x), x)


def test_zero_init_refused_for_plain_net():
    with pytest.raises(ValueError, match="plain"):
        create_model("plain18", zero_init_residual=True)


def test_cifar_stem_resnet18():
    model = create_model("resnet18_cifar")
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == 11.17
    assert isinstance(model.maxpool, torch.nn.Identity) and model.conv1.kernel_size == (3, 3)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    # The ImageNet stem shrinks a 32x32 image to 1x1 before the last stage: the common mistake.
    imagenet_stem = create_model("resnet18", num_classes=10).eval()
    assert imagenet_stem.forward_features(torch.randn(1, 3, 32, 32)).shape[-1] == 1


def test_plain18_keeps_key_names_but_no_projection():
    def shapes(model):
        return [(key, tuple(tensor.shape)) for key, tensor in model.state_dict().items()]

    residual = shapes(create_model("resnet18"))
    assert any("downsample" in key for key, _ in residual)
    assert shapes(create_model("plain18")) == [(key, shape) for key, shape in residual if "downsample" not in key]
