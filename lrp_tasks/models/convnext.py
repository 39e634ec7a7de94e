"""ConvNeXt with torchvision's module structure and parameter names (``features``, ``avgpool``,
``classifier``; ``CNBlock``: depthwise 7×7 conv, ``Permute``, LayerNorm, Linear, GELU, Linear,
``Permute``, ``layer_scale``, ``StochasticDepth``): ``build_convnext()`` at any size;
``build_convnext(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), num_classes=1000)`` is ConvNeXt-Tiny
(its ``state_dict`` loads strictly from torchvision's ``convnext_tiny``)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import Tensor, nn

from .blocks import LayerNorm2d, Permute, StochasticDepth


class CNBlock(nn.Module):
    """x + StochasticDepth(layer_scale · block(x))."""

    def __init__(self, dim: int, layer_scale: float, stochastic_depth_prob: float) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim, bias=True),
            Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=1e-6),
            nn.Linear(dim, 4 * dim, bias=True),
            nn.GELU(),
            nn.Linear(4 * dim, dim, bias=True),
            Permute([0, 3, 1, 2]),
        )
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob)

    def forward(self, input: Tensor) -> Tensor:
        result = self.layer_scale * self.block(input)
        result = self.stochastic_depth(result)
        result += input
        return result


class ConvNeXt(nn.Module):
    def __init__(
        self, depths: Sequence[int], dims: Sequence[int], num_classes: int = 10, in_channels: int = 3,
        layer_scale: float = 1e-6, stochastic_depth_prob: float = 0.0,
    ) -> None:
        super().__init__()
        norm = partial(LayerNorm2d, eps=1e-6)
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(in_channels, dims[0], 4, 4, 0, bias=True), norm(dims[0]))]
        total, done = sum(depths), 0
        for stage, (depth, dim) in enumerate(zip(depths, dims, strict=True)):
            blocks = []
            for _ in range(depth):
                blocks.append(CNBlock(dim, layer_scale, stochastic_depth_prob * done / max(total - 1, 1)))
                done += 1
            layers.append(nn.Sequential(*blocks))
            if stage + 1 < len(dims):
                layers.append(nn.Sequential(norm(dim), nn.Conv2d(dim, dims[stage + 1], kernel_size=2, stride=2)))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(norm(dims[-1]), nn.Flatten(1), nn.Linear(dims[-1], num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)))


def build_convnext(
    depths: Sequence[int] = (1, 1, 2, 1), dims: Sequence[int] = (8, 16, 24, 32), num_classes: int = 10,
    in_channels: int = 3, layer_scale: float = 1e-6,
) -> ConvNeXt:
    """A ConvNeXt (default: a reduced size for tests; ConvNeXt-Tiny is depths (3, 3, 9, 3), dims
    (96, 192, 384, 768), 1000 classes)."""
    return ConvNeXt(depths, dims, num_classes, in_channels, layer_scale)
