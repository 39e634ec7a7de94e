"""Vision Transformers (lrp_tasks/models/vit.py): the torchvision and timm structures are one model
in two implementations (same relevance), AttnLRP/CP-LRP and the CNN presets explain them, and
CP-LRP conserves relevance when nothing absorbs it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrp_tasks.engine import (
    CPLRP,
    LRP,
    AttnLRP,
    Composite,
    EpsilonPlusFlat,
    GlobalTypeMap,
    LRPConfig,
    MatMul,
    NameMap,
    PassRule,
    RuleLayerMismatchError,
    Softmax,
    StopRule,
    UniformRule,
    ZeroRule,
)
from lrp_tasks.engine.attention import InProjection
from lrp_tasks.models.vit import build_timm_vit, build_torchvision_vit, timm_state_dict

DT = torch.float64
CONFIG = LRPConfig()
CONFIG.supports_activation(nn.GELU)  # GELU: the identity rule (PassRule in the presets)


def _perturbed(model: nn.Module, scale: float = 0.1) -> nn.Module:
    """Random weights everywhere (torchvision's init zeroes the class token and LayerNorm biases)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)
    return model


def _pair(zero: bool = False) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    tv = _perturbed(build_torchvision_vit().to(DT)).eval()
    if zero:  # nothing that absorbs relevance: no biases, class token, position embedding
        with torch.no_grad():
            for name, p in tv.named_parameters():
                if name.endswith("bias") or "class_token" in name or "pos_embedding" in name:
                    p.zero_()
    tm = build_timm_vit().to(DT).eval()
    tm.load_state_dict(timm_state_dict(tv.state_dict()), strict=True)
    return tv, tm


def _x(n: int = 3) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(n, 3, 32, 32, dtype=DT)


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).flatten(1).abs().amax(1) / b.flatten(1).abs().amax(1)).max())


COMPOSITES = {
    "AttnLRP": AttnLRP(),
    "CPLRP": CPLRP(),
    "AttnLRP-gamma": AttnLRP(linear_gamma=0.05, conv_gamma=0.25),
    "EpsilonPlusFlat": EpsilonPlusFlat(),
}


@pytest.mark.parametrize("name", sorted(COMPOSITES))
def test_timm_structure_with_transplanted_weights_gives_the_torchvision_relevance(name):
    tv, tm = _pair()
    x = _x()
    torch.testing.assert_close(tm(x), tv(x))
    a = LRP(tv, COMPOSITES[name], config=CONFIG, conservation_tolerance=None)
    b = LRP(tm, COMPOSITES[name], config=CONFIG, conservation_tolerance=None)
    for target in (None, 3, [0, 4, 9]):
        ra, rb = a(x, target).val, b(x, target).val
        assert torch.isfinite(ra).all()
        assert _rel_err(rb, ra) < 1e-9, (name, target)


def test_the_presets_assign_the_attention_rules_and_print_them():
    tv, _ = _pair()
    text = repr(LRP(tv, CPLRP(), config=CONFIG))
    assert "self_attention.in_proj_q: InProjection" in text and "softmax: torch.softmax" in text
    analyzer = LRP(tv, CPLRP(), config=CONFIG)
    rules = {type(s.module): analyzer.step_rules[i] for i, s in enumerate(analyzer.plan.steps)}
    assert rules[Softmax] == StopRule() and rules[MatMul] == UniformRule(1e-9, softmax_constant=True)
    assert type(rules[InProjection]).__name__ == "EpsilonRule"


@pytest.mark.parametrize("make", [build_torchvision_vit, build_timm_vit])
def test_cp_lrp_conserves_relevance_without_biases(make):
    tv, tm = _pair(zero=True)
    model = tv if make is build_torchvision_vit else tm
    x = _x()
    expl = LRP(model, CPLRP(epsilon=0.0), config=CONFIG)(x)
    torch.testing.assert_close(expl.val.flatten(1).sum(1), torch.ones(len(x), dtype=DT), rtol=0, atol=1e-6)


class Tokens(nn.Module):
    """Token plumbing of ViTs: patch tokens, a class token, a position embedding, x[:, 0]."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 6, bias=False)
        self.cls = nn.Parameter(torch.randn(1, 1, 6))
        self.pos = nn.Parameter(torch.randn(1, 4, 6))
        self.head = nn.Linear(6, 3, bias=False)

    def forward(self, x):  # (n, 4, 3) → tokens (n, 3, 6)
        t = self.proj(x.transpose(1, 2))
        t = torch.cat([self.cls.expand(x.shape[0], -1, -1), t], dim=1)
        t = self.pos + t  # the parameter first: PassRule must still find the activation
        return self.head(t[:, 0] + t.mean(1))


def test_position_embedding_and_class_token_absorb_relevance_unless_passed():
    torch.manual_seed(5)
    model = Tokens().to(DT).eval()
    x = torch.randn(2, 4, 3, dtype=DT)
    analyzer = LRP(model, conservation_tolerance=None)
    breakdown = analyzer.conservation_breakdown(x)
    assert {"cat", "add"} <= set(breakdown.bias_steps)  # the class token and the position embedding
    composite = Composite(GlobalTypeMap({nn.Linear: ZeroRule(stabilizer=0.0)}), NameMap({"add": PassRule()}))
    passed = LRP(model, composite, conservation_tolerance=None)
    layerwise = passed(x, layerwise_relevances=True).layerwise_relevances
    torch.testing.assert_close(layerwise["cat"], layerwise["add"])  # all of the addition's relevance
    expected = layerwise["cat"][:, 1:].sum((1, 2))  # the class token's slice is absorbed
    torch.testing.assert_close(passed(x).val.sum((1, 2)), expected)
    with pytest.raises(RuleLayerMismatchError, match="add_1"):  # t[:, 0] + t.mean(1): two activations
        LRP(model, Composite(NameMap({"add_1": PassRule()})))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_batch_gives_each_samples_relevance_alone(dtype):
    _, tm = _pair()
    tm = tm.to(dtype)
    x = _x(3).to(dtype)
    analyzer = LRP(tm, AttnLRP(), config=CONFIG, conservation_tolerance=None)
    batch = analyzer(x, [1, 2, 3]).val
    alone = torch.cat([analyzer(x[i:i + 1], i + 1).val for i in range(3)])
    assert _rel_err(batch, alone) < (1e-5 if dtype == torch.float32 else 1e-12)

