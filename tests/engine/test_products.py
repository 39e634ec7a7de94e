"""Issue 21: element-wise products of two activations (squeeze-and-excitation gates, gated MLPs) are a
``Mul`` step. A gate — the operand computed through a sigmoid or hard sigmoid — is held constant by
default (``GateRule``: all relevance to the gated signal); without a gate, AttnLRP's uniform split.
Each against its closed form, in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lrp_tasks.config import parse_config
from lrp_tasks.engine import (
    LRP,
    Composite,
    GateRule,
    GlobalTypeMap,
    ModelCheckError,
    Mul,
    UniformRule,
    ZeroRule,
)
from tests.digits_audit import digits_audit_config

DT = torch.float64


class SqueezeExcitation(nn.Module):
    """torchvision's SqueezeExcitation: x * sigmoid(fc2(act(fc1(avgpool(x)))))."""

    def __init__(self, channels: int, squeeze: int, gate: type[nn.Module] = nn.Sigmoid, bias: bool = True) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1, bias=bias)
        self.fc2 = nn.Conv2d(squeeze, channels, 1, bias=bias)
        self.activation = nn.SiLU()
        self.scale_activation = gate()

    def forward(self, x: Tensor) -> Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


class SENet(nn.Module):
    def __init__(self, gate: type[nn.Module] = nn.Sigmoid, bias: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 6, 3, bias=bias)
        self.se = SqueezeExcitation(6, 3, gate, bias)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(6, 4, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.flatten(self.pool(self.se(torch.relu(self.conv(x))))))


class GatedMLP(nn.Module):
    """silu(a(x)) * b(x): a product of two activations with no sigmoid gate."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.out = nn.Linear(4, 6), nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(F.silu(self.a(x)) * self.b(x))


def _layerwise(model: nn.Module, x: Tensor, composite: Composite | None = None):
    analyzer = LRP(model, composite, conservation_tolerance=None)
    return analyzer, analyzer(x, layerwise_relevances=True).layerwise_relevances


@pytest.mark.parametrize("gate", [nn.Sigmoid, nn.Hardsigmoid])
def test_a_squeeze_excitation_gate_is_held_constant(gate) -> None:
    torch.manual_seed(0)
    model = SENet(gate).to(DT).eval()
    x = torch.randn(3, 2, 7, 7, dtype=DT)
    analyzer, rel = _layerwise(model, x)
    step = next(s for s in analyzer.plan.steps if isinstance(s.module, Mul))
    assert step.module.gate_inputs == {0} and "GateRule" in repr(analyzer)
    signal = torch.relu(model.conv(x))
    g = model.se.scale_activation(model.se.fc2(model.se.activation(model.se.fc1(model.se.avgpool(signal)))))
    out = rel[step.name]
    expected = signal * g * out / (signal * g + 1e-9 * torch.where(signal * g >= 0, 1.0, -1.0))
    torch.testing.assert_close(rel["relu"], expected, rtol=1e-12, atol=1e-15)  # closed form
    assert not {"se.fc2", "se.fc1", "se.avgpool"} & set(rel)  # no relevance reaches the gate's branch


def test_without_biases_the_gated_network_conserves() -> None:
    torch.manual_seed(1)
    model = SENet(bias=False).to(DT).eval()
    x = torch.randn(4, 2, 7, 7, dtype=DT)
    composite = Composite(GlobalTypeMap({(nn.Conv2d, nn.Linear, nn.AdaptiveAvgPool2d): ZeroRule(stabilizer=1e-30)}))
    expl = LRP(model, composite, conservation_tolerance=None)(x)  # one-hot seed: 1 per sample
    torch.testing.assert_close(expl.val.sum((1, 2, 3)), torch.ones(4, dtype=DT), rtol=1e-6, atol=1e-9)


def test_a_product_without_a_gate_is_split_uniformly() -> None:
    torch.manual_seed(2)
    model = GatedMLP().to(DT).eval()
    x = torch.randn(5, 4, dtype=DT)
    analyzer, rel = _layerwise(model, x)
    step = next(s for s in analyzer.plan.steps if isinstance(s.module, Mul))
    assert step.module.gate_inputs == frozenset() and "UniformRule" in repr(analyzer)
    u, v = F.silu(model.a(x)), model.b(x)
    z = u * v
    half = z * rel[step.name] / (z + 1e-9 * torch.where(z >= 0, 1.0, -1.0)) / 2
    torch.testing.assert_close(rel["silu"], half, rtol=1e-12, atol=1e-15)  # each operand: half
    torch.testing.assert_close(rel["b"], half, rtol=1e-12, atol=1e-15)


def test_the_gate_can_be_named() -> None:
    torch.manual_seed(3)
    model = GatedMLP().to(DT).eval()
    x = torch.randn(5, 4, dtype=DT)
    _, rel = _layerwise(model, x, Composite(GlobalTypeMap({Mul: GateRule(gate=1)})))
    assert "b" not in rel  # the named gate's branch gets none
    product = next(name for name in rel if name.startswith("mul"))
    torch.testing.assert_close(rel["silu"], rel[product], rtol=1e-6, atol=1e-8)  # up to the stabilizer


def test_gate_rule_without_a_gate_says_how_to_name_it() -> None:
    model = GatedMLP().eval()
    with pytest.raises(RuntimeError, match=r"GateRule\(gate=0 or 1\)"):
        LRP(model, Composite(GlobalTypeMap({Mul: GateRule()})))(torch.randn(2, 4))


def test_a_sigmoid_that_would_receive_relevance_stays_refused() -> None:
    with pytest.raises(ModelCheckError, match="unsupported activation Sigmoid"):
        LRP(SENet().eval(), Composite(GlobalTypeMap({Mul: UniformRule()})))
    with pytest.raises(ModelCheckError, match="unsupported activation Sigmoid"):
        LRP(nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 2)))


def test_configs_address_the_family_and_the_rule(tmp_path) -> None:
    rules = [{"type": "Mul", "rule": {"kind": "Gate", "gate": 1}}]
    cfg = parse_config(digits_audit_config(tmp_path, "mul", composite={"rules": rules}))
    assert cfg.composite.rules[0].rule.kind == "Gate"
