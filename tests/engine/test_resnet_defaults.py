"""The default convention on ResNets: every preset keeps the explained relevance (a one-hot seed
of 1) within a band, where RelevancePropagation.jl's plain Gamma exploded after residual additions
(issue 20). Figures for all presets and models: benchmarks/resnet_conservation.py."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from lrp_tasks import engine
from lrp_tasks.engine import presets
from lrp_tasks.models.resnet import build_resnet

from .models import randomize_batchnorm
from .resnets import BasicBlock, Bottleneck, ResNet

ROOT = Path(__file__).resolve().parents[2]
BAND = (-0.5, 2.5)
"""Per-sample Σ R_in for a seed of 1 (biases and stabilizers absorb, α2β1 amplifies: not exactly 1)."""


def _sums(model: nn.Module, x: Tensor, composite: engine.Composite) -> Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", engine.ConservationWarning)  # bias absorption is expected here
        return engine.LRP(model, composite)(x).val.flatten(1).sum(1)


def _preset(name: str, low: float, high: float) -> engine.Composite:
    return engine.PRESETS[name](low, high) if name == "EpsilonGammaBox" else engine.PRESETS[name]()


def _assert_in_band(model: nn.Module, x: Tensor, low: float, high: float) -> None:
    model = engine.canonize(model)
    for name in engine.PRESETS:
        s = _sums(model, x, _preset(name, low, high))
        assert torch.isfinite(s).all(), name
        assert BAND[0] <= s.min().item() and s.max().item() <= BAND[1], (name, s.min().item(), s.max().item())


def test_every_preset_keeps_the_seed_on_the_trained_digits_resnet():
    model = build_resnet([1, 1, 1, 1], num_classes=10, in_channels=1, width=8, stem="small")
    model.load_state_dict(load_file(str(ROOT / "models/resnet_digits.safetensors")))
    x = np.load(ROOT / "data/digits32/digits32_test.npz")["x"][:32]
    _assert_in_band(model.eval(), torch.from_numpy(x).float().reshape(-1, 1, 32, 32) / 255, 0.0, 1.0)


def _torchvision_like(block: type, layers: list[int]) -> ResNet:
    """Random weights, BatchNorm statistics from train-mode passes."""
    torch.manual_seed(0)
    model = ResNet(block, layers, classes=10)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, 64, 64))
    return model.eval()


@pytest.mark.parametrize(("block", "layers"), [(BasicBlock, [2, 2, 2, 2]), (Bottleneck, [3, 4, 6, 3])],
                         ids=["resnet18", "resnet50"])
def test_every_preset_keeps_the_seed_on_torchvision_resnets(block, layers):
    torch.manual_seed(1)
    _assert_in_band(_torchvision_like(block, layers), torch.randn(4, 3, 64, 64), -3.0, 3.0)


def test_default_gamma_is_plain_gamma_on_a_relu_network():
    """Where every convolution feeds a ReLU, the generalized Gamma of the default equals
    RelevancePropagation.jl's plain Gamma (it differs only on negative outputs given relevance:
    before an addition, or before an unfused BatchNorm after a ReLU as in the seed CNN)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 16 * 16, 10),
    )
    randomize_batchnorm(model)
    model = engine.canonize(model.eval())
    plain = presets._composite(
        "plain", engine.GammaRule(0.25), engine.ZBoxRule(-3.0, 3.0), 1e-6, "rpj", False
    )
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32)
    default = engine.LRP(model, engine.EpsilonGammaBox(-3.0, 3.0), conservation_tolerance=None)(x).val
    torch.testing.assert_close(default, engine.LRP(model, plain, conservation_tolerance=None)(x).val)
    assert "GeneralizedGammaRule(gamma=0.25)" in repr(engine.EpsilonGammaBox(-3.0, 3.0))
