"""CIFAR ResNets v1/v2 and plain twins: the papers' parameter counts and the shortcut semantics."""

import pytest
import torch
import torch.nn.functional as F

from resnetlab.models import ZeroPadShortcut, cifar_resnet, create_model
from resnetlab.models.blocks import BasicBlock, make_shortcut


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("depth, millions", [(32, "0.46"), (44, "0.66"), (56, "0.85"), (110, "1.7")])
def test_resnet_v1_params_match_paper_table6(depth, millions):
    """Compared at the precision Table 6 prints."""
    digits = len(millions.split(".")[1])
    assert round(count(create_model(f"resnet{depth}")) / 1e6, digits) == float(millions)


def test_resnet20_exact_params():
    assert count(create_model("resnet20")) == 269_722


def test_preact_bottleneck_params():
    assert count(create_model("resnet164v2")) == 1_703_258
    assert round(count(create_model("preact_resnet110")) / 1e6, 1) == 1.7


@pytest.mark.slow
def test_very_deep_params():
    """ResNet-1202 (DRL Table 6) and ResNet-1001 (IM Table 3): building them takes most of a minute on 2 cores."""
    assert round(count(create_model("resnet1202")) / 1e6, 1) == 19.4
    # IM Table 3 prints 10.2M for ResNet-1001, but the same design that gives ResNet-164 its 1,703,258
    # (bottleneck widths 16/64, 32/128, 64/256, 1x1 projections at shape changes) gives 10,327,706.
    assert count(create_model("resnet1001v2")) == 10_327_706


def test_plain_nets_have_no_shortcut_and_option_a_no_parameters():
    plain, residual = create_model("plain20"), create_model("resnet20")
    assert count(plain) == count(residual) == 269_722
    assert not any(isinstance(m, ZeroPadShortcut) for m in plain.modules())
    assert sum(isinstance(m, ZeroPadShortcut) for m in residual.modules()) == 2
    assert all(block.downsample is None and not block.residual for block in plain.modules()
               if isinstance(block, BasicBlock))


def test_option_b_and_c_add_the_projections():
    base = count(create_model("resnet20"))
    projections_b = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)  # two stage changes: 1x1 conv + BN each
    assert count(create_model("resnet20", shortcut="B")) == base + projections_b
    c = create_model("resnet20", shortcut="C")
    assert sum(1 for block in c.modules() if isinstance(block, BasicBlock) and block.downsample is not None) == 9


def test_option_a_shortcut_subsamples_and_zero_pads_values():
    shortcut = make_shortcut("A", 16, 32, stride=2)
    x = torch.randn(2, 16, 8, 8)
    out = shortcut(x)
    assert out.shape == (2, 32, 4, 4)
    torch.testing.assert_close(out[:, :16], x[:, :, ::2, ::2], rtol=0, atol=0)
    assert torch.count_nonzero(out[:, 16:]) == 0
    assert make_shortcut("A", 16, 16, stride=1) is None  # identity where the shape stays


def test_residual_block_adds_its_shortcut_and_plain_block_does_not():
    torch.manual_seed(0)
    block = BasicBlock(16, 32, stride=2, shortcut="A").eval()
    x = torch.randn(2, 16, 8, 8)
    branch = block.bn2(block.conv2(F.relu(block.bn1(block.conv1(x)))))
    expected = F.relu(branch + F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 0, 16)))
    torch.testing.assert_close(block(x), expected)


def hand_built_plain_forward(model, x):
    """The plain net as the explicit chain conv-BN-ReLU-...-pool-fc, without any module's forward."""
    x = F.relu(model.bn1(model.conv1(x)))
    for stage in model.stages():
        for block in stage:
            x = F.relu(block.bn1(block.conv1(x)))
            x = F.relu(block.bn2(block.conv2(x)))
    return model.fc(x.mean(dim=(2, 3)))


def test_plain_net_equals_chain_of_layers_and_differs_from_residual_twin():
    torch.manual_seed(0)
    residual = create_model("resnet20").eval()
    plain = create_model("plain20").eval()
    plain.load_state_dict(residual.state_dict())  # option A: identical parameter sets
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), hand_built_plain_forward(plain, x))
        assert (plain(x) - residual(x)).abs().max() > 1e-3


def option_a_params(blocks: int, num_classes: int = 10) -> int:
    """DRL section 4.2's net with n = ``blocks`` per stage, counted by hand: a 3x3 conv of 16 filters, three
    stages of n blocks of two 3x3 convs (16, 32, 64 filters), each conv followed by BN (a weight and a bias per
    channel), parameter-free option A shortcuts, then a fully connected layer."""
    total, channels = 3 * 16 * 9 + 2 * 16, 16
    for width in (16, 32, 64):
        for _ in range(blocks):
            total += (9 * channels * width + 2 * width) + (9 * width * width + 2 * width)
            channels = width
    return total + 64 * num_classes + num_classes


def test_the_hand_count_gives_the_sizes_of_table6():
    """0.27M, 0.46M, 0.66M, 0.85M and 1.7M parameters for ResNet-20, 32, 44, 56 and 110 (n = 3, 5, 7, 9, 18)."""
    assert [round(option_a_params(n) / 1e6, 2) for n in (3, 5, 7, 9)] == [0.27, 0.46, 0.66, 0.85]
    assert round(option_a_params(18) / 1e6, 1) == 1.7


@pytest.mark.parametrize("build, blocks", [(lambda: cifar_resnet(8), 1), (lambda: create_model("plain14"), 2)],
                         ids=["cifar_resnet(8)", "plain14"])
def test_any_valid_depth_builds_its_blocks_per_stage(build, blocks):
    model = build()
    assert [len(stage) for stage in model.stages()] == [blocks] * 3
    assert count(model) == option_a_params(blocks)


def test_clear_error_for_invalid_depth_or_shortcut():
    with pytest.raises(ValueError, match="6n\\+2"):
        create_model("resnet21")
    with pytest.raises(ValueError, match="9n\\+2"):
        create_model("resnet30v2")
    with pytest.raises(ValueError, match="shortcut option"):
        create_model("resnet20", shortcut="D")


def test_forward_features_and_head_compose():
    model = create_model("resnet20").eval()
    x = torch.randn(2, 3, 32, 32)
    features = model.forward_features(x)
    assert features.shape == (2, 64, 8, 8)
    torch.testing.assert_close(model.forward_head(features), model(x))
