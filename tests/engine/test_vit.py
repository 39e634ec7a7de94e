"""Vision Transformers (lrp_tasks/models/vit.py): the torchvision and timm structures are one model
in two implementations (same relevance), AttnLRP/CP-LRP and the CNN presets explain them, and
CP-LRP conserves relevance when nothing absorbs it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrp_tasks.engine import CPLRP, LRP, AttnLRP, EpsilonPlusFlat, LRPConfig, MatMul, Softmax, StopRule, UniformRule
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
