"""One analyzer for every model: plans, addressable functional steps, in-place layers, selectors."""

from __future__ import annotations

import re

import pytest
import torch
from torch import Tensor, nn

from lrp_tasks.audit.composite import build_composite
from lrp_tasks.engine import (
    LRP,
    Add,
    Composite,
    EpsilonPlus,
    EpsilonPlusFlat,
    EpsilonRule,
    GeneralizedGammaRule,
    GlobalMap,
    GlobalTypeMap,
    GradientRule,
    LayerMap,
    ModelCheckError,
    NameMap,
    PassRule,
    UnmatchedSelectorError,
    ZeroRule,
    ZPlusRule,
    canonize,
)

from .models import relu_mlp, seed_cnn
from .resnets import BasicBlock, Bottleneck, small_resnet


def test_sequential_and_graph_models_lower_onto_one_plan():
    seq = LRP(relu_mlp())
    graph = LRP(canonize(small_resnet()))
    assert type(seq) is type(graph) is LRP
    assert seq.plan.kind == "sequential" and graph.plan.kind == "graph"
    assert [s.name for s in seq.plan][:3] == ["input", "0", "1"]
    add = graph.plan.steps[graph.plan.index_of("add_1")]
    assert isinstance(add.module, Add) and add.scope == "layer2.0" and len(add.inputs) == 2


@pytest.mark.parametrize("block", [BasicBlock, Bottleneck])
def test_gradient_rule_everywhere_is_the_gradient_on_a_resnet_with_inplace_relus(block):
    torch.manual_seed(0)
    model = small_resnet(block).double()
    assert any(getattr(m, "inplace", False) for m in model.modules())
    analyzer = LRP(model, Composite(default=GradientRule()))
    assert all(isinstance(analyzer.step_rules[analyzer.plan.index_of(n)], GradientRule) for n in ("add", "flatten"))
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    expl = analyzer(x)
    xg = x.clone().requires_grad_(True)
    out = model(xg)
    (grad,) = torch.autograd.grad(out[torch.arange(3), expl.output_selection].sum(), xg)
    torch.testing.assert_close(x * expl.val, x * grad, rtol=0, atol=1e-12)
    assert not any(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("rule", [GradientRule(), ZeroRule(), EpsilonRule()])
def test_inplace_activations_work_with_every_rule(rule):
    torch.manual_seed(1)
    seq = nn.Sequential(nn.Linear(4, 5), nn.ReLU(inplace=True), nn.Linear(5, 3)).double().eval()
    x = torch.randn(2, 4, dtype=torch.float64)
    before = x.clone()
    for model in (seq, small_resnet().double()):
        inp = x if model is seq else torch.randn(2, 3, 32, 32, dtype=torch.float64)
        saved = inp.clone()
        expl = LRP(model, Composite(default=rule))(inp)
        assert torch.isfinite(expl.val).all()
        assert torch.equal(inp, saved)  # the user's input is never overwritten
    assert torch.equal(x, before)
    assert all(getattr(m, "inplace", True) for m in seq.modules() if isinstance(m, nn.ReLU))


def test_additions_are_addressed_by_family_by_name_and_by_default():
    model = canonize(small_resnet())
    default = LRP(model, Composite(GlobalTypeMap({nn.Conv2d: ZPlusRule()}), stabilizer=1e-6))
    adds = [i for i, s in enumerate(default.plan.steps) if isinstance(s.module, Add)]
    assert len(adds) == 4
    assert all(default.step_rules[i] == ZeroRule(stabilizer=1e-6) for i in adds)
    by_type = LRP(model, Composite(GlobalTypeMap({Add: GradientRule()})))
    assert all(isinstance(by_type.step_rules[i], GradientRule) for i in adds)
    by_name = LRP(model, Composite(NameMap({"add_2": EpsilonRule(0.1)})))
    assert [by_name.step_rules[i] for i in adds].count(EpsilonRule(0.1)) == 1
    assert "add_2: operator.add [layer3.0]" in repr(by_name) and "=> EpsilonRule(epsilon=0.1)," in repr(by_name)
    zennit = LRP(model, EpsilonPlusFlat(convention="zennit"))
    assert all(zennit.step_rules[i] == ZeroRule(stabilizer=1e-6) for i in adds)


def test_gradient_on_an_addition_passes_the_relevance_to_both_summands():
    torch.manual_seed(2)
    model = canonize(small_resnet()).double()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    split = LRP(model, Composite(GlobalTypeMap({nn.ReLU: PassRule()})))
    passed = LRP(model, Composite(GlobalTypeMap({nn.ReLU: PassRule(), Add: GradientRule()})))
    i = split.plan.index_of("add_3")
    rel = torch.randn(2, 32, 2, 2, dtype=torch.float64)
    record = passed.forward_record(x)
    shares = passed._distribute(i, passed.plan.steps[i], record, rel)
    assert len(shares) == 2 and all(torch.equal(s, rel) for _, s in shares)
    record = split.forward_record(x)
    shares = split._distribute(i, split.plan.steps[i], record, rel)
    # the split conserves up to what the stabilizer (1e-9) absorbs where the sum is tiny
    torch.testing.assert_close(shares[0][1] + shares[1][1], rel, rtol=1e-4, atol=1e-5)


class LeakyResidual(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 4)
        self.act = nn.LeakyReLU()
        self.fc2 = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.fc1(x))
        return self.out(self.fc2(h) + h)


def test_leaky_relu_refused_with_the_same_table_in_sequential_and_residual_models():
    seq = nn.Sequential(nn.Linear(4, 4), nn.LeakyReLU(), nn.Linear(4, 2))
    reports = []
    for model in (seq, LeakyResidual()):
        with pytest.raises(ModelCheckError) as info:
            LRP(model, EpsilonPlusFlat())
        text = str(info.value)
        assert text.startswith("LeakyReLU lets negative activations through")
        assert "GeneralizedGammaRule" in text and "skip_checks=True" in text
        name, _, status = next(r for r in info.value.report if r[1].startswith("LeakyReLU"))
        assert status.startswith("LeakyReLU: the next weighted layer needs GeneralizedGammaRule")
        assert re.search(rf"\n  {name}: LeakyReLU\(negative_slope=0.01\) +=> LeakyReLU: the next weighted", text)
        reports.append(status)
    assert reports[0].endswith("('2' has EpsilonRule(epsilon=1e-06))")
    # in the residual model the activation feeds fc2 and, through the addition, out
    assert "'fc2' has EpsilonRule" in reports[1] and "'out' has EpsilonRule" in reports[1]
    fixed = Composite(GlobalTypeMap({nn.Linear: GeneralizedGammaRule()}))
    for model in (seq, LeakyResidual()):
        LRP(model, fixed)(torch.randn(2, 4))


@pytest.mark.parametrize(
    ("primitive", "named"),
    [
        (NameMap({"nonexistent.*": ZeroRule()}), "'nonexistent.*'"),
        (LayerMap(99, ZeroRule()), "LayerMap(99, ZeroRule())"),
    ],
)
def test_a_selector_that_matches_nothing_is_an_error_naming_it(primitive, named):
    for model in (seed_cnn(), small_resnet()):
        with pytest.raises(UnmatchedSelectorError) as info:
            LRP(canonize(model), Composite(primitive))
        assert named in str(info.value) and "matches no layer" in str(info.value)


def test_config_selectors_that_match_nothing_name_the_entry():
    spec = {"rules": [{"type": "Conv2d", "rule": "ZPlus"}, {"name": "nonexistent.*", "rule": "Zero"}]}
    with pytest.raises(UnmatchedSelectorError, match=r"composite.rules\[0\] \(index: 99\) matches no layer"):
        LRP(relu_mlp(), build_composite({"rules": [{"index": 99, "rule": "Zero"}]}))
    with pytest.raises(UnmatchedSelectorError, match=r"composite.rules\[0\] \(type: Conv2d\)"):
        LRP(relu_mlp(), build_composite(spec))
    with pytest.raises(UnmatchedSelectorError, match=r"composite.rules\[1\] \(name: nonexistent\.\*\)"):
        LRP(seed_cnn(), build_composite(spec))
    # presets address types a model may lack: never an error
    LRP(relu_mlp(), EpsilonPlus())
    adds = build_composite({"rules": [{"type": "Add", "rule": "Gradient"}]})
    analyzer = LRP(canonize(small_resnet()), adds)
    assert repr(analyzer).count("=> GradientRule(),") >= 4


def test_global_map_claims_layers_and_leaves_functions_their_defaults():
    pools = (nn.MaxPool2d, nn.AdaptiveAvgPool2d)
    comp = Composite(GlobalMap(ZPlusRule()), GlobalTypeMap({nn.ReLU: PassRule(), pools: ZeroRule()}))
    analyzer = LRP(canonize(small_resnet()), comp)
    kinds = {type(analyzer.step_rules[analyzer.plan.index_of(n)]).__name__ for n in ("add", "flatten")}
    assert kinds == {"ZeroRule", "PassRule"}


def test_exported_programs_are_lowered_onto_layers_and_explained_like_the_original():
    torch.manual_seed(5)
    model = small_resnet()
    x = torch.randn(2, 3, 32, 32)
    exported = torch.export.export(model, (x,)).module()
    analyzer = LRP(canonize(exported), EpsilonPlusFlat())
    original = LRP(canonize(model), EpsilonPlusFlat())

    def weighted(a: LRP) -> list[str]:
        return [name for name, layer in a.named_layers if hasattr(layer, "weight")]

    assert weighted(analyzer) == weighted(original)  # layers are named after their weights
    torch.testing.assert_close(analyzer(x).val, original(x).val, rtol=1e-4, atol=1e-7)
    text = repr(analyzer)
    assert "aten" not in text and "add_" in text and "=> ZeroRule()," in text


def test_torchscript_is_refused_with_the_way_out():
    from lrp_tasks.engine import GraphTraceError

    scripted = torch.jit.script(relu_mlp().eval()) if hasattr(torch.jit, "script") else None
    if scripted is None:
        pytest.skip("torch.jit.script unavailable")
    with pytest.raises(GraphTraceError, match=r"torch\.export"):
        LRP(scripted)


def test_conservation_warning_gives_the_figure_once_and_can_be_silenced():
    from lrp_tasks.engine import ConservationWarning

    torch.manual_seed(6)
    model = canonize(small_resnet())
    x = torch.randn(2, 3, 32, 32)
    analyzer = LRP(model, EpsilonPlusFlat())
    with pytest.warns(ConservationWarning, match=r"gap of \d+\.\d%") as caught:
        analyzer(x)
        analyzer(x)
    assert len([w for w in caught if issubclass(w.category, ConservationWarning)]) == 1
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConservationWarning)
        LRP(model, EpsilonPlusFlat(), conservation_tolerance=None)(x)
