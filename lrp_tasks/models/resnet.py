"""A ResNet with torchvision's structure and parameter names (torchvision is not a dependency).

``build_resnet()`` with the defaults is ResNet-18: its ``state_dict`` keys and shapes match
``torchvision.models.resnet18``, so torchvision weights re-saved as safetensors load strictly
(``safetensors.torch.save_file(resnet18(weights=...).state_dict(), "resnet18.safetensors")``).

Two deliberate differences, neither visible in the state dict: every ReLU is its own module and
none is in-place (hook-based LRP needs one module per activation and intact inputs), and the
flatten before ``fc`` is a module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn


class BasicBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN, plus the shortcut (1×1 conv + BN when the shape changes), ReLU."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + identity)


class ResNet(nn.Module):
    """Stem, stages of BasicBlocks (width doubling, stride 2 from the second stage), pool, fc."""

    def __init__(
        self,
        layers: Sequence[int] = (2, 2, 2, 2),
        num_classes: int = 1000,
        in_channels: int = 3,
        width: int = 64,
        stem: Literal["imagenet", "small"] = "imagenet",
    ) -> None:
        super().__init__()
        if not layers or any(n < 1 for n in layers):
            raise ValueError(f"layers must be a non-empty list of positive block counts, got {list(layers)}")
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        elif stem == "small":  # CIFAR-style stem for small inputs: no downsampling before stage 1
            self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        else:
            raise ValueError(f"stem must be 'imagenet' or 'small', got {stem!r}")
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()
        inplanes = width
        for i, blocks in enumerate(layers):
            planes = width * 2**i
            stride = 1 if i == 0 else 2
            stage = [BasicBlock(inplanes, planes, stride)] + [BasicBlock(planes, planes) for _ in range(blocks - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
            inplanes = planes
        self.num_stages = len(layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(inplanes, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():  # torchvision's initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(self.flatten(self.avgpool(x)))


def build_resnet(
    layers: Sequence[int] = (2, 2, 2, 2),
    num_classes: int = 1000,
    in_channels: int = 3,
    width: int = 64,
    stem: Literal["imagenet", "small"] = "imagenet",
) -> ResNet:
    """ResNet-18 by default; ``layers=[3, 4, 6, 3]`` is ResNet-34. Small variants for tests:
    ``build_resnet([1, 1], num_classes=10, in_channels=1, width=8, stem="small")``."""
    return ResNet(layers, num_classes, in_channels, width, stem)


__all__ = ["BasicBlock", "ResNet", "build_resnet"]
