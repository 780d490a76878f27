"""Residual blocks and shortcuts of He et al. 2015 ("Deep Residual Learning", DRL) and 2016 ("Identity Mappings", IM).

Names follow torchvision (``conv1``, ``bn1``, ``downsample``...) so that ImageNet state dicts load unchanged.
Each block carries its shape fact ``expansion`` and a ``residual`` switch: with ``residual=False`` the block is
the paper's *plain* counterpart (DRL section 4.1), the same layers with the shortcut addition removed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from resnetlab.errors import UserError

SHORTCUT_OPTIONS = ("A", "B", "C")


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A (DRL section 3.3): identity subsampled by ``stride``, new channels zero-filled; no parameters."""

    def __init__(self, stride: int, extra_channels: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra_channels}"


def make_shortcut(option: str, in_channels: int, out_channels: int, stride: int, norm: bool = True) -> nn.Module | None:
    """The shortcut of one block: ``None`` means identity.

    A: identity, zero-padding where the shape changes; B: 1x1 projection (conv + BN) only where the shape
    changes; C: projection on every block (DRL section 4.1, "Identity vs. Projection Shortcuts").
    """
    if option not in SHORTCUT_OPTIONS:
        raise UserError(f"unknown shortcut option {option!r}: choose one of A, B, C")
    shape_changes = stride != 1 or in_channels != out_channels
    if option == "A":
        if not shape_changes:
            return None
        if out_channels < in_channels:
            raise UserError("shortcut option A can only add channels; use B or C")
        return ZeroPadShortcut(stride, out_channels - in_channels)
    if option == "B" and not shape_changes:
        return None
    layers: list[nn.Module] = [conv1x1(in_channels, out_channels, stride)]
    if norm:
        layers.append(nn.BatchNorm2d(out_channels))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (DRL Figure 2 / 5 left): conv-BN-ReLU-conv-BN, add shortcut, ReLU."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1, shortcut: str = "B",
                 residual: bool = True) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.residual = residual
        self.conv1 = conv3x3(in_channels, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = make_shortcut(shortcut, in_channels, out_channels, stride) if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)

    def last_norm(self) -> nn.BatchNorm2d:
        return self.bn2


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (DRL Figure 5 right). ``stride_in_1x1`` puts the stride on the first 1x1
    convolution as in the paper's original (Caffe) models; torchvision puts it on the 3x3 ("ResNet v1.5")."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, shortcut: str = "B",
                 residual: bool = True, stride_in_1x1: bool = False) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.residual = residual
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(in_channels, planes, stride_1x1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride_3x3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = make_shortcut(shortcut, in_channels, out_channels, stride) if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)

    def last_norm(self) -> nn.BatchNorm2d:
        return self.bn3


class PreActBasicBlock(nn.Module):
    """Full pre-activation (IM Figure 4e): BN-ReLU-conv-BN-ReLU-conv, then add; nothing after the addition.

    Where the shortcut is a projection it reads the pre-activated input, as in the authors' code.
    """

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1, shortcut: str = "B") -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = conv3x3(in_channels, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, out_channels)
        self.relu = nn.ReLU(inplace=False)
        self.downsample = make_shortcut(shortcut, in_channels, out_channels, stride, norm=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(pre)
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + shortcut


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck (IM section 4, ResNet-164/1001): BN-ReLU-1x1, BN-ReLU-3x3, BN-ReLU-1x1, add.

    A down-sampling unit strides its first 1x1 convolution, as the authors' code does (``resnet-pre-act.lua``,
    KaimingHe/resnet-1k-layers); ``stride_in_1x1=False`` moves the stride to the 3x3 instead."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, shortcut: str = "B",
                 stride_in_1x1: bool = True) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = conv1x1(in_channels, planes, stride_1x1)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride_3x3)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, out_channels)
        self.relu = nn.ReLU(inplace=False)
        self.downsample = make_shortcut(shortcut, in_channels, out_channels, stride, norm=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(pre)
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + shortcut
