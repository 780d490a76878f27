"""Pre-activation ResNets for CIFAR (He et al. 2016, "Identity Mappings in Deep Residual Networks", IM).

Bottleneck nets have depth 9n+2 (ResNet-164: n=18, ResNet-1001: n=111) with stage widths 16/64, 32/128,
64/256 (bottleneck planes / output channels, IM section 4); the basic-block variant (ResNet-110 pre-act,
IM Table 2) has depth 6n+2 and widths 16/32/64. Every block is BN-ReLU-conv; a final BN-ReLU precedes pooling
because the last addition is not followed by an activation.

The bottleneck nets follow the authors' released code, ``resnet-pre-act.lua`` in KaimingHe/resnet-1k-layers
(commit fde7ee9, 2016): a down-sampling unit strides its first 1x1 convolution (``stride_in_1x1=False`` puts the
stride on the 3x3 instead), every convolution starts from normal(0, sqrt(2 / (k*k*out_channels))) (``ConvInit``:
He initialisation, fan-out), BN from weight 1 and bias 0 (``BNInit``), and the linear layer keeps Torch's default
weights, uniform(+-1/sqrt(in_features)) (PyTorch's default is the same), with its bias zeroed.
"""

from __future__ import annotations

import torch
from torch import nn

from resnetlab.models.blocks import PreActBasicBlock, PreActBottleneck
from resnetlab.models.checkpointing import GradCheckpointingMixin, run_blocks
from resnetlab.models.resnet import PooledClassifier, cifar_depth_to_blocks, init_weights, make_stage

PreActBlock = type[PreActBasicBlock] | type[PreActBottleneck]


class PreActResNet(PooledClassifier, GradCheckpointingMixin, nn.Module):
    """A CIFAR pre-activation ResNet: 3x3 stem, three stages, final BN-ReLU, pooling, classifier. The stages and
    the head are ResNet's (``make_stage``, ``PooledClassifier``); the stem (no BN-ReLU after the first conv) and the
    final BN-ReLU are what pre-activation changes (IM Figure 4e)."""

    def __init__(self, block: PreActBlock, blocks_per_stage: int, *, num_classes: int = 10,
                 shortcut: str = "B", in_channels: int = 3, stride_in_1x1: bool = True) -> None:
        super().__init__()
        self.block = block
        self.shortcut_option = shortcut
        self.stride_in_1x1 = stride_in_1x1
        self.inplanes = 16
        self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=3, padding=1, bias=False)
        self.layer1 = self._make_layer(16, blocks_per_stage, 1)
        self.layer2 = self._make_layer(32, blocks_per_stage, 2)
        self.layer3 = self._make_layer(64, blocks_per_stage, 2)
        self.num_features = 64 * block.expansion
        self.bn = nn.BatchNorm2d(self.num_features)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.num_features, num_classes)
        init_weights(self)
        nn.init.zeros_(self.fc.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        extra = {"stride_in_1x1": self.stride_in_1x1} if self.block is PreActBottleneck else {}
        stage, self.inplanes = make_stage(self.block, self.inplanes, planes, blocks, stride, self.shortcut_option,
                                          **extra)
        return stage

    def stages(self) -> list[nn.Sequential]:
        return [self.layer1, self.layer2, self.layer3]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        for stage in self.stages():
            x = run_blocks(stage, x, self.grad_checkpointing)
        return self.relu(self.bn(x))


def preact_bottleneck_resnet(depth: int, *, num_classes: int = 10, shortcut: str = "B",
                             stride_in_1x1: bool = True) -> PreActResNet:
    """ResNet v2 with bottleneck blocks, depth 9n+2 (ResNet-164, ResNet-1001 of IM Table 3), as resnet-pre-act.lua."""
    n = cifar_depth_to_blocks(depth, 3, "pre-activation bottleneck ResNet")
    return PreActResNet(PreActBottleneck, n, num_classes=num_classes, shortcut=shortcut, stride_in_1x1=stride_in_1x1)


def preact_basic_resnet(depth: int, *, num_classes: int = 10, shortcut: str = "B") -> PreActResNet:
    """ResNet v2 with two-layer basic blocks, depth 6n+2 (ResNet-110 pre-act of IM Table 2)."""
    n = cifar_depth_to_blocks(depth, 2, "pre-activation ResNet")
    return PreActResNet(PreActBasicBlock, n, num_classes=num_classes, shortcut=shortcut)
