"""Building blocks of torchvision's modern CNNs, with torchvision's module structure and parameter
names (neither torchvision nor its ops are a dependency): ``Conv2dNormActivation`` as a plain
``nn.Sequential`` (conv, norm, activation: keys ``0``, ``1``), ``Permute``, ``StochasticDepth`` and
``SqueezeExcitation``, shared by ConvNeXt, EfficientNet and MobileNetV3."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def conv_norm_activation(
    in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 1,
    norm: Callable[[int], nn.Module] | None = nn.BatchNorm2d, activation: type[nn.Module] | None = nn.ReLU,
    padding: int | None = None, bias: bool | None = None,
) -> nn.Sequential:
    """torchvision's ``Conv2dNormActivation``: conv (no bias when a norm follows), norm, activation."""
    padding = (kernel_size - 1) // 2 if padding is None else padding
    bias = norm is None if bias is None else bias
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=bias)
    ]
    if norm is not None:
        layers.append(norm(out_channels))
    if activation is not None:
        layers.append(activation())
    return nn.Sequential(*layers)


class Permute(nn.Module):
    """``torch.permute`` as a module (torchvision.ops.misc.Permute)."""

    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: Tensor) -> Tensor:
        return torch.permute(x, self.dims)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor (torchvision's ConvNeXt): channels last,
    ``F.layer_norm``, channels first again."""

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class StochasticDepth(nn.Module):
    """Drops whole residual branches at random in training (torchvision.ops.StochasticDepth, mode
    "row"); the identity in eval mode, which is how a model is explained."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation: the input scaled per channel by a gate computed from its
    global average (``fc1``, activation, ``fc2``, sigmoid or hard sigmoid)."""

    def __init__(
        self, channels: int, squeeze: int, activation: type[nn.Module] = nn.ReLU,
        scale_activation: type[nn.Module] = nn.Sigmoid,
    ) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def forward(self, x: Tensor) -> Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


def make_divisible(value: float, divisor: int = 8) -> int:
    """torchvision's channel rounding: the nearest multiple of `divisor`, never 10 % below `value`."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new
