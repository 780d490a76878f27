"""The Keras tutorial's CIFAR-10 ResNets ("Trains a ResNet on the CIFAR10 dataset", ``resnet_v1``/``resnet_v2``),
layer for layer, in PyTorch.

They differ from the papers' nets in details that change parameter counts and outputs, and we keep every one:
convolutions carry a bias; the 1x1 shortcut convolution at a stage change has no BN; v2 widens 16->64, 64->128,
128->256 (the paper: 16->64, 32->128, 64->256); Keras "same" padding pads only bottom/right for stride 2;
BN uses Keras' eps 1e-3 and momentum 0.99; weights start from Keras' truncated He-normal; the head is
8x8 average pooling and a dense layer whose softmax we leave to the loss (the model returns logits).

Modules are registered in the order Keras creates its layers, so that Keras weights load by position
(see ``keras_weights.py``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from resnetlab.models.resnet import cifar_depth_to_blocks

KERAS_BN_EPS = 1e-3
KERAS_BN_MOMENTUM = 0.01  # Keras' momentum 0.99 is PyTorch's 0.01
TRUNCATED_NORMAL_STD = 0.87962566103423978  # std of a unit normal truncated at +-2, as Keras' VarianceScaling divides


class KerasConv2d(nn.Conv2d):
    """Conv2D with padding="same" computed as TensorFlow does: the odd pixel goes to the bottom/right.

    Where the padding comes out even on both sides (every stride-1 layer) the convolution pads by itself; only
    the uneven case (stride 2) copies the input into a padded tensor first.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (top, bottom), (left, right) = (
            same_padding(size, kernel, stride)
            for size, kernel, stride in zip(x.shape[-2:], self.kernel_size, self.stride))
        if top == bottom and left == right:
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation, self.groups)
        return super().forward(F.pad(x, [left, right, top, bottom]))


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same" padding of one dimension: (before, after), the odd pixel after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class KerasResNetLayer(nn.Module):
    """The tutorial's ``resnet_layer``: conv-BN-ReLU (``conv_first``) or BN-ReLU-conv, each part optional."""

    def __init__(self, in_channels: int, filters: int = 16, kernel_size: int = 3, stride: int = 1,
                 activation: bool = True, batch_normalization: bool = True, conv_first: bool = True) -> None:
        super().__init__()
        self.conv_first = conv_first
        self.conv = KerasConv2d(in_channels, filters, kernel_size, stride)
        norm_channels = filters if conv_first else in_channels
        self.bn = (nn.BatchNorm2d(norm_channels, eps=KERAS_BN_EPS, momentum=KERAS_BN_MOMENTUM)
                   if batch_normalization else None)
        self.relu = nn.ReLU() if activation else None

    def _normalize_and_activate(self, x: torch.Tensor) -> torch.Tensor:
        if self.bn is not None:
            x = self.bn(x)
        return x if self.relu is None else self.relu(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv_first:
            return self._normalize_and_activate(self.conv(x))
        return self.conv(self._normalize_and_activate(x))


class KerasBlockV1(nn.Module):
    def __init__(self, in_channels: int, filters: int, stride: int) -> None:
        super().__init__()
        self.layer1 = KerasResNetLayer(in_channels, filters, stride=stride)
        self.layer2 = KerasResNetLayer(filters, filters, activation=False)
        self.shortcut = (KerasResNetLayer(in_channels, filters, 1, stride, activation=False,
                                          batch_normalization=False) if stride != 1 else None)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layer2(self.layer1(x))
        return self.relu((x if self.shortcut is None else self.shortcut(x)) + y)


class KerasBlockV2(nn.Module):
    def __init__(self, in_channels: int, filters_in: int, filters_out: int, stride: int,
                 first_of_net: bool, first_of_stage: bool) -> None:
        super().__init__()
        self.layer1 = KerasResNetLayer(in_channels, filters_in, 1, stride, activation=not first_of_net,
                                       batch_normalization=not first_of_net, conv_first=False)
        self.layer2 = KerasResNetLayer(filters_in, filters_in, 3, conv_first=False)
        self.layer3 = KerasResNetLayer(filters_in, filters_out, 1, conv_first=False)
        self.shortcut = (KerasResNetLayer(in_channels, filters_out, 1, stride, activation=False,
                                          batch_normalization=False) if first_of_stage else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layer3(self.layer2(self.layer1(x)))
        return (x if self.shortcut is None else self.shortcut(x)) + y


class KerasResNet(nn.Module):
    """Stem, blocks and the tutorial's head (8x8 average pooling, flatten, dense)."""

    def __init__(self, stem: nn.Module, blocks: list[nn.Module], final: nn.Module, num_features: int,
                 num_classes: int) -> None:
        super().__init__()
        self.stem = stem
        self.blocks = nn.Sequential(*blocks)
        self.final = final
        self.avgpool = nn.AvgPool2d(8)
        self.fc = nn.Linear(num_features, num_classes)
        self.num_features = num_features
        keras_init(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.final(self.blocks(self.stem(x)))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def keras_init(model: nn.Module) -> None:
    """Keras' he_normal: a normal truncated at two standard deviations, rescaled to variance 2 / fan_in."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            fan_in = module.weight[0].numel()
            std = math.sqrt(2.0 / fan_in) / TRUNCATED_NORMAL_STD
            nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
            nn.init.zeros_(module.bias)


def keras_resnet_v1(depth: int, num_classes: int = 10) -> KerasResNet:
    """The tutorial's ``resnet_v1``: depth 6n+2, 16/32/64 filters."""
    n = cifar_depth_to_blocks(depth, 2, "keras_resnet_v1")
    stem = KerasResNetLayer(3, 16)
    blocks: list[nn.Module] = []
    in_channels, filters = 16, 16
    for stack in range(3):
        for index in range(n):
            blocks.append(KerasBlockV1(in_channels, filters, 2 if stack > 0 and index == 0 else 1))
            in_channels = filters
        filters *= 2
    return KerasResNet(stem, blocks, nn.Identity(), in_channels, num_classes)


def keras_resnet_v2(depth: int, num_classes: int = 10) -> KerasResNet:
    """The tutorial's ``resnet_v2``: depth 9n+2, bottlenecks 16->64, 64->128, 128->256, final BN-ReLU."""
    n = cifar_depth_to_blocks(depth, 3, "keras_resnet_v2")
    stem = KerasResNetLayer(3, 16)
    blocks: list[nn.Module] = []
    in_channels, filters_in = 16, 16
    for stage in range(3):
        filters_out = filters_in * 4 if stage == 0 else filters_in * 2
        for index in range(n):
            stride = 2 if stage > 0 and index == 0 else 1
            blocks.append(KerasBlockV2(in_channels, filters_in, filters_out, stride,
                                       first_of_net=stage == 0 and index == 0, first_of_stage=index == 0))
            in_channels = filters_out
        filters_in = filters_out
    final = nn.Sequential(nn.BatchNorm2d(in_channels, eps=KERAS_BN_EPS, momentum=KERAS_BN_MOMENTUM), nn.ReLU())
    return KerasResNet(stem, blocks, final, in_channels, num_classes)
