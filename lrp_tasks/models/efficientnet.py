"""EfficientNet-B0 and MobileNetV3 with torchvision's module structure and parameter names
(``features``, ``avgpool``, ``classifier``; MBConv / InvertedResidual blocks of
``Conv2dNormActivation``s and a ``SqueezeExcitation`` gate): ``build_efficientnet_b0()`` and
``build_mobilenet_v3_small()`` at torchvision's sizes with ``width=1.0, depth=1.0`` (their
``state_dict``s load strictly from torchvision's ``efficientnet_b0`` and ``mobilenet_v3_small``),
smaller for tests."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

from torch import Tensor, nn

from .blocks import SqueezeExcitation, StochasticDepth, conv_norm_activation, make_divisible


@dataclass(frozen=True)
class Stage:
    """One stage: expand ratio, kernel, stride, input and output channels, blocks."""

    expand: float
    kernel: int
    stride: int
    in_channels: int
    out_channels: int
    blocks: int


B0_STAGES = (
    Stage(1, 3, 1, 32, 16, 1), Stage(6, 3, 2, 16, 24, 2), Stage(6, 5, 2, 24, 40, 2), Stage(6, 3, 2, 40, 80, 3),
    Stage(6, 5, 1, 80, 112, 3), Stage(6, 5, 2, 112, 192, 4), Stage(6, 3, 1, 192, 320, 1),
)


class MBConv(nn.Module):
    """EfficientNet's block: expand (1×1), depthwise, squeeze-and-excitation (SiLU, sigmoid), project;
    a residual addition through StochasticDepth when shapes allow."""

    def __init__(self, expand: float, kernel: int, stride: int, cin: int, cout: int, drop: float) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        bn = nn.BatchNorm2d
        hidden = make_divisible(cin * expand)
        layers: list[nn.Module] = []
        if hidden != cin:
            layers.append(conv_norm_activation(cin, hidden, 1, norm=bn, activation=nn.SiLU))
        layers.append(conv_norm_activation(hidden, hidden, kernel, stride, groups=hidden, norm=bn, activation=nn.SiLU))
        layers.append(SqueezeExcitation(hidden, max(1, cin // 4), activation=nn.SiLU))
        layers.append(conv_norm_activation(hidden, cout, 1, norm=bn, activation=None))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(drop)

    def forward(self, input: Tensor) -> Tensor:
        result = self.block(input)
        if self.use_res_connect:
            result = self.stochastic_depth(result)
            result += input
        return result


class EfficientNet(nn.Module):
    def __init__(self, stages: tuple[Stage, ...], num_classes: int, in_channels: int, last_channels: int) -> None:
        super().__init__()
        bn = nn.BatchNorm2d
        layers: list[nn.Module] = [
            conv_norm_activation(in_channels, stages[0].in_channels, 3, 2, norm=bn, activation=nn.SiLU)
        ]
        for stage in stages:
            blocks = [
                MBConv(stage.expand, stage.kernel, stage.stride if i == 0 else 1,
                       stage.in_channels if i == 0 else stage.out_channels, stage.out_channels, 0.0)
                for i in range(stage.blocks)
            ]
            layers.append(nn.Sequential(*blocks))
        layers.append(conv_norm_activation(stages[-1].out_channels, last_channels, 1, norm=bn, activation=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=0.2, inplace=True), nn.Linear(last_channels, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def build_efficientnet_b0(
    num_classes: int = 10, in_channels: int = 3, width: float = 0.25, depth: float = 0.34
) -> EfficientNet:
    """EfficientNet-B0's structure with channels × `width` and blocks × `depth` (rounded up as
    torchvision does); ``width=1.0, depth=1.0, num_classes=1000`` is ``efficientnet_b0``."""
    stages = tuple(
        Stage(s.expand, s.kernel, s.stride, make_divisible(s.in_channels * width),
              make_divisible(s.out_channels * width), math.ceil(s.blocks * depth))
        for s in B0_STAGES
    )
    return EfficientNet(stages, num_classes, in_channels, 4 * stages[-1].out_channels)


@dataclass(frozen=True)
class Inverted:
    """One MobileNetV3 block: input, kernel, expanded and output channels, SE, Hardswish, stride."""

    in_channels: int
    kernel: int
    expanded: int
    out_channels: int
    se: bool
    hardswish: bool
    stride: int


SMALL_BLOCKS = (
    Inverted(16, 3, 16, 16, True, False, 2), Inverted(16, 3, 72, 24, False, False, 2),
    Inverted(24, 3, 88, 24, False, False, 1), Inverted(24, 5, 96, 40, True, True, 2),
    Inverted(40, 5, 240, 40, True, True, 1), Inverted(40, 5, 240, 40, True, True, 1),
    Inverted(40, 5, 120, 48, True, True, 1), Inverted(48, 5, 144, 48, True, True, 1),
    Inverted(48, 5, 288, 96, True, True, 2), Inverted(96, 5, 576, 96, True, True, 1),
    Inverted(96, 5, 576, 96, True, True, 1),
)


class InvertedResidual(nn.Module):
    """MobileNetV3's block: expand, depthwise, squeeze-and-excitation (ReLU, hard sigmoid), project."""

    def __init__(self, cnf: Inverted) -> None:
        super().__init__()
        self.use_res_connect = cnf.stride == 1 and cnf.in_channels == cnf.out_channels
        bn = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
        act = nn.Hardswish if cnf.hardswish else nn.ReLU
        layers: list[nn.Module] = []
        if cnf.expanded != cnf.in_channels:
            layers.append(conv_norm_activation(cnf.in_channels, cnf.expanded, 1, norm=bn, activation=act))
        layers.append(conv_norm_activation(cnf.expanded, cnf.expanded, cnf.kernel, cnf.stride, groups=cnf.expanded,
                                           norm=bn, activation=act))
        if cnf.se:
            squeeze = make_divisible(cnf.expanded // 4, 8)
            layers.append(SqueezeExcitation(cnf.expanded, squeeze, scale_activation=nn.Hardsigmoid))
        layers.append(conv_norm_activation(cnf.expanded, cnf.out_channels, 1, norm=bn, activation=None))
        self.block = nn.Sequential(*layers)

    def forward(self, input: Tensor) -> Tensor:
        result = self.block(input)
        if self.use_res_connect:
            result += input
        return result


class MobileNetV3(nn.Module):
    def __init__(self, blocks: tuple[Inverted, ...], last_channels: int, num_classes: int, in_channels: int) -> None:
        super().__init__()
        bn = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
        first = blocks[0].in_channels
        layers: list[nn.Module] = [conv_norm_activation(in_channels, first, 3, 2, norm=bn, activation=nn.Hardswish)]
        layers += [InvertedResidual(cnf) for cnf in blocks]
        lastconv = 6 * blocks[-1].out_channels
        layers.append(conv_norm_activation(blocks[-1].out_channels, lastconv, 1, norm=bn, activation=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(lastconv, last_channels), nn.Hardswish(inplace=True), nn.Dropout(p=0.2, inplace=True),
            nn.Linear(last_channels, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def build_mobilenet_v3_small(num_classes: int = 10, in_channels: int = 3, width: float = 0.25) -> MobileNetV3:
    """MobileNetV3-Small's structure with channels × `width`; ``width=1.0, num_classes=1000`` is
    ``mobilenet_v3_small``."""
    def w(c: int) -> int:
        return make_divisible(c * width)

    blocks = tuple(
        Inverted(w(b.in_channels), b.kernel, w(b.expanded), w(b.out_channels), b.se, b.hardswish, b.stride)
        for b in SMALL_BLOCKS
    )
    return MobileNetV3(blocks, make_divisible(1024 * width), num_classes, in_channels)
