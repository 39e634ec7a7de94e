"""Where relevance goes when an analysis does not conserve: biases, constants, other steps."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from lrp_tasks import engine
from lrp_tasks.models.resnet import build_resnet

ROOT = Path(__file__).resolve().parents[2]


def _digits_resnet() -> tuple[nn.Module, Tensor]:
    model = build_resnet([1, 1, 1, 1], num_classes=10, in_channels=1, width=8, stem="small")
    model.load_state_dict(load_file(str(ROOT / "models/resnet_digits.safetensors")))
    x = np.load(ROOT / "data/digits32/digits32_test.npz")["x"][:16]
    return engine.canonize(model.eval()), torch.from_numpy(x).float().reshape(-1, 1, 32, 32) / 255


def test_breakdown_adds_up_to_the_gap_and_blames_the_biases_of_the_digits_resnet():
    model, x = _digits_resnet()
    analyzer = engine.LRP(model, engine.EpsilonPlusFlat(), conservation_tolerance=None)
    breakdown = analyzer.conservation_breakdown(x)
    gap = 1.0 - analyzer(x).val.flatten(1).sum(1)
    torch.testing.assert_close(breakdown.biases + breakdown.other, gap, rtol=1e-4, atol=1e-5)
    assert gap.abs().min() > 0.25  # the report's tolerance: every sample "breaks" conservation
    assert breakdown.bias_share > 0.99
    assert "layer4.0.conv2" in breakdown.bias_steps and "conv1" not in breakdown.bias_steps  # Flat zeroes it


def test_conservation_warning_says_biases_absorb_the_relevance():
    model, x = _digits_resnet()
    with pytest.warns(engine.ConservationWarning) as caught:
        engine.LRP(model, engine.EpsilonPlusFlat())(x)
    message = str(caught[0].message)
    assert "absorbed by bias terms" in message and "not a sign of an unsupported layer" in message


class Halved(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 3, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x * 0.5)


def test_a_loss_elsewhere_is_named_by_its_step():
    torch.manual_seed(0)
    composite = engine.Composite(engine.GlobalTypeMap({engine.Scale: engine.GradientRule()}))
    analyzer = engine.LRP(Halved().eval(), composite)
    x = torch.rand(4, 6)
    breakdown = analyzer.conservation_breakdown(x)
    assert breakdown.bias_share == 0 and breakdown.bias_steps == []
    torch.testing.assert_close(breakdown.other, torch.full((4,), 0.5))  # the gradient of x * 0.5 halves it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        analyzer(x)
    assert "the rest is lost at mul" in str(caught[0].message)
