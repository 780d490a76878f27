"""ResNet v1 (He et al. 2015) for CIFAR (section 4.2) and ImageNet (Table 1), and the plain twins of both.

One class builds all of them: a stem, stages of blocks made by one stage builder, global average pooling and
a linear classifier. Parameter and buffer names equal torchvision's ``resnet18..152``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from resnetlab.errors import UserError
from resnetlab.models.blocks import BasicBlock, Bottleneck
from resnetlab.models.checkpointing import GradCheckpointingMixin, run_blocks

Block = type[BasicBlock] | type[Bottleneck]
STEMS = ("imagenet", "cifar")


def make_stage(block: type[nn.Module], in_channels: int, planes: int, blocks: int, stride: int,
               *args: object, **options: object) -> tuple[nn.Sequential, int]:
    """One stage of ``blocks`` blocks and its output channels (torchvision's ``_make_layer``): the first block
    takes the stride and the change of width, so its shortcut is the one the shortcut option decides; ``args`` and
    ``options`` go to every block after (in_channels, planes, stride)."""
    layers = []
    for index in range(blocks):
        layers.append(block(in_channels, planes, stride if index == 0 else 1, *args, **options))
        in_channels = planes * block.expansion
    return nn.Sequential(*layers), in_channels


class PooledClassifier:
    """The head every ResNet of the papers ends in: global average pooling, then one linear layer (DRL section 3.4,
    Table 1); ``forward`` is the features (``forward_features``, from the subclass) then the head."""

    avgpool: nn.AdaptiveAvgPool2d
    fc: nn.Linear

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class ResNet(PooledClassifier, GradCheckpointingMixin, nn.Module):
    """A v1 ResNet (or, with ``residual=False``, its plain twin).

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        layers: blocks per stage, e.g. ``[3, 4, 6, 3]`` for ResNet-34, ``[n, n, n]`` for CIFAR 6n+2.
        widths: ``planes`` of each stage (output channels are ``planes * block.expansion``).
        stem: ``"imagenet"`` (7x7 stride-2 conv + 3x3 max-pool, for 224x224 images) or ``"cifar"``
            (one 3x3 stride-1 conv, no pooling, for 32x32 images).
        shortcut: ``"A"``, ``"B"`` or ``"C"`` (DRL section 3.3).
        residual: ``False`` removes every shortcut: the paper's plain network.
        stride_in_1x1: bottleneck stride on the first 1x1 conv (paper) instead of the 3x3 (torchvision);
            basic blocks have no 1x1 conv, so it does not change them.
        zero_init_residual: zero the last BN's scale in every block so each starts as the identity
            (Goyal et al. 2017, "Accurate, Large Minibatch SGD"); only meaningful with shortcuts.
    """

    def __init__(self, block: Block, layers: Sequence[int], widths: Sequence[int] = (64, 128, 256, 512), *,
                 num_classes: int = 1000, stem: str = "imagenet", shortcut: str = "B", residual: bool = True,
                 stride_in_1x1: bool = False, zero_init_residual: bool = False, in_channels: int = 3) -> None:
        super().__init__()
        if stem not in STEMS:
            raise UserError(f"unknown stem {stem!r}: choose one of {', '.join(STEMS)}")
        if zero_init_residual and not residual:
            raise UserError("zero_init_residual would silence a plain network (no shortcut carries the signal)")
        if num_classes < 1:
            raise UserError(f"num_classes must be positive, got {num_classes}")
        self.block = block
        self.shortcut_option = shortcut
        self.residual = residual
        self.stride_in_1x1 = stride_in_1x1
        self.inplanes = widths[0]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        for index, (planes, blocks) in enumerate(zip(widths, layers)):
            stride = 1 if index == 0 else 2
            setattr(self, f"layer{index + 1}", self._make_layer(planes, blocks, stride))
        self.num_stages = len(layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.num_features = widths[len(layers) - 1] * block.expansion
        self.fc = nn.Linear(self.num_features, num_classes)
        init_weights(self)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, (BasicBlock, Bottleneck)) and module.last_norm().weight is not None:
                    nn.init.zeros_(module.last_norm().weight)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        options = {"stride_in_1x1": self.stride_in_1x1} if issubclass(self.block, Bottleneck) else {}
        stage, self.inplanes = make_stage(self.block, self.inplanes, planes, blocks, stride, self.shortcut_option,
                                          self.residual, **options)
        return stage

    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, f"layer{index + 1}") for index in range(self.num_stages)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in self.stages():
            x = run_blocks(stage, x, self.grad_checkpointing)
        return x


def init_weights(model: nn.Module) -> None:
    """He initialisation (He et al. 2015, "Delving Deep into Rectifiers"), as DRL section 3.4 uses."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)) and module.weight is not None:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def cifar_depth_to_blocks(depth: int, per_block: int, name: str) -> int:
    """Blocks per stage for a CIFAR net of ``depth`` = ``per_block * 3 * n + 2`` layers (DRL 6n+2, IM 9n+2)."""
    if not isinstance(depth, int) or depth < per_block * 3 + 2 or (depth - 2) % (per_block * 3) != 0:
        step = per_block * 3
        lower = max(step + 2, (depth - 2) // step * step + 2) if isinstance(depth, int) else step + 2
        raise UserError(f"{name}: depth {depth} is not of the form {step}n+2 (n >= 1); "
                        f"nearest valid depths: {lower}, {lower + step}")
    return (depth - 2) // (per_block * 3)


def cifar_resnet(depth: int, *, num_classes: int = 10, shortcut: str = "A", residual: bool = True,
                 zero_init_residual: bool = False) -> ResNet:
    """CIFAR ResNet v1 of DRL section 4.2: 6n+2 layers, 16/32/64 filters, option A by default."""
    n = cifar_depth_to_blocks(depth, 2, "resnet" if residual else "plain")
    model = ResNet(BasicBlock, [n, n, n], (16, 32, 64), num_classes=num_classes, stem="cifar", shortcut=shortcut,
                   residual=residual, zero_init_residual=zero_init_residual)
    # The DRL authors released no CIFAR code; the CIFAR code they point to (fb.resnet.torch, and their own
    # resnet-pre-act.lua built on it) keeps Torch's default linear weights, uniform(+-1/sqrt(in)), the same as
    # PyTorch's, and zeroes the bias. The ImageNet nets keep torchvision's initialisation.
    nn.init.zeros_(model.fc.bias)
    return model


IMAGENET_LAYOUTS: dict[int, tuple[Block, list[int]]] = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
    152: (Bottleneck, [3, 8, 36, 3]),
}


def imagenet_resnet(depth: int, *, num_classes: int = 1000, shortcut: str = "B", residual: bool = True,
                    stem: str = "imagenet", stride_in_1x1: bool = False, zero_init_residual: bool = False) -> ResNet:
    """ResNet-18/34/50/101/152 of DRL Table 1 (option B as torchvision); ``stem="cifar"`` for 32x32 inputs."""
    if depth not in IMAGENET_LAYOUTS:
        raise UserError(f"no ImageNet ResNet of depth {depth}: choose one of {sorted(IMAGENET_LAYOUTS)}")
    block, layers = IMAGENET_LAYOUTS[depth]
    return ResNet(block, layers, num_classes=num_classes, stem=stem, shortcut=shortcut, residual=residual,
                  stride_in_1x1=stride_in_1x1, zero_init_residual=zero_init_residual)
