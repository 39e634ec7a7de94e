"""Composite primitives, last-match-wins precedence and the presets' first-layer conventions."""

from __future__ import annotations

import torch
from torch import nn

from lrp_tasks.engine import (
    LRP,
    Composite,
    EpsilonAlpha2Beta1Flat,
    EpsilonGammaBox,
    EpsilonPlusFlat,
    EpsilonRule,
    FirstLayerMap,
    FirstLayerTypeMap,
    FirstNTypeMap,
    FlatRule,
    GammaRule,
    GeneralizedGammaRule,
    GlobalMap,
    GlobalTypeMap,
    GradientRule,
    LastLayerMap,
    LastLayerTypeMap,
    LayerMap,
    NameMap,
    PassRule,
    RangeMap,
    RangeTypeMap,
    ZBoxRule,
    ZeroRule,
    ZPlusRule,
)

MLP = nn.Sequential(
    nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)
)


def names(rules):
    return [type(r).__name__ for r in rules]


def test_last_match_wins_and_unmatched_get_zero_rule():
    comp = Composite(
        GlobalTypeMap({nn.Linear: EpsilonRule()}),
        RangeMap(range(2, 5), ZeroRule(stabilizer=1e-3)),
        LayerMap(4, ZPlusRule()),
    )
    rules = LRP(MLP, comp).rules
    assert names(rules) == [
        "EpsilonRule", "ZeroRule", "ZeroRule", "ZeroRule", "ZPlusRule", "ZeroRule", "EpsilonRule",
    ]
    assert [r.stabilizer for r in rules[1:4]] == [1e-9, 1e-3, 1e-3]


def test_first_last_and_type_primitives():
    comp = Composite(
        GlobalMap(PassRule()),
        FirstLayerMap(FlatRule()),
        LastLayerMap(EpsilonRule()),
        FirstNTypeMap(3, {nn.Linear: GammaRule()}),
        RangeTypeMap(range(4, 7), {nn.Linear: ZPlusRule()}),
        FirstLayerTypeMap({nn.Conv2d: ZBoxRule(0, 1)}),  # first layer is Linear: no effect
        LastLayerTypeMap({nn.ReLU: ZeroRule()}),  # last layer is Linear: no effect
    )
    assert names(LRP(MLP, comp).rules) == [
        "GammaRule", "PassRule", "GammaRule", "PassRule", "ZPlusRule", "PassRule", "ZPlusRule",
    ]


def test_name_map_with_exact_names_and_patterns():
    model = nn.Sequential()
    model.add_module("features", nn.Sequential(nn.Linear(4, 4), nn.ReLU()))
    model.add_module("classifier", nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)))
    comp = Composite(NameMap({"features.0": FlatRule(), "classifier.*": EpsilonRule()}))
    analyzer = LRP(model, comp)
    assert analyzer.layer_names == ["features.0", "features.1", "classifier.0", "classifier.1", "classifier.2"]
    assert names(analyzer.rules) == ["FlatRule", "ZeroRule", "EpsilonRule", "EpsilonRule", "EpsilonRule"]


def conv_net(first_linear: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(16, 16), nn.Unflatten(1, (1, 4, 4))] if first_linear else []
    layers += [nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.AvgPool2d(1),
               nn.Conv2d(2, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3)]
    return nn.Sequential(*layers)


def test_presets_first_layer_rpj_vs_zennit():
    rpj = LRP(conv_net(), EpsilonPlusFlat()).rules
    assert names(rpj) == ["FlatRule", "PassRule", "ZeroRule", "ZeroRule", "ZPlusRule", "PassRule", "PassRule",
                          "EpsilonRule"]
    # RPJ: the special rule only if the first layer is a convolution
    rpj_lin = LRP(conv_net(first_linear=True), EpsilonPlusFlat()).rules
    assert names(rpj_lin)[:4] == ["PassRule", "EpsilonRule", "PassRule", "ZPlusRule"]
    # zennit: Flat on the first Linear-or-Conv wherever it is; max pooling gets the gradient
    zen = LRP(conv_net(first_linear=True), EpsilonPlusFlat(convention="zennit")).rules
    assert names(zen)[:4] == ["PassRule", "FlatRule", "PassRule", "ZPlusRule"]
    assert names(zen)[5:7] == ["GradientRule", "ZeroRule"]
    assert all(getattr(r, "stabilizer", 1e-6) == 1e-6 for r in zen if not isinstance(r, (PassRule, GradientRule)))
    # zennit EpsilonGammaBox: ZBox on the first convolution only, generalized gamma elsewhere
    zbox = LRP(conv_net(first_linear=True), EpsilonGammaBox(-1, 1, convention="zennit")).rules
    assert names(zbox)[1] == "EpsilonRule" and names(zbox)[3] == "ZBoxRule"
    assert isinstance(zbox[7], GeneralizedGammaRule)
    assert names(LRP(conv_net(), EpsilonAlpha2Beta1Flat()).rules)[0] == "FlatRule"


def test_composite_prints_its_primitives():
    text = repr(EpsilonGammaBox(-1.0, 1.0))
    assert text.startswith("Composite[EpsilonGammaBox](")
    assert "ZBoxRule(low=-1.0, high=1.0)" in text and "GammaRule(gamma=0.25)" in text


def test_rule_instances_compare_by_value():
    assert EpsilonRule(0.1) == EpsilonRule(0.1) and EpsilonRule(0.1) != EpsilonRule(0.2)
    assert torch.is_tensor(ZBoxRule(torch.zeros(3, 1, 1), 1.0).low)
