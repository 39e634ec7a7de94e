"""Each rule on Linear and Conv equals the naive formula of LRP-SPEC.md (tests/engine/naive.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrp_tasks.engine import (
    AlphaBetaRule,
    EpsilonRule,
    FlatRule,
    GammaRule,
    GeneralizedGammaRule,
    InvalidRuleError,
    LayerContext,
    LayerNormRule,
    PassRule,
    WSquareRule,
    ZBoxRule,
    ZeroRule,
    ZPlusRule,
    stabilize,
)

from . import naive

torch.manual_seed(0)
DT = torch.float64


def make_layer(kind: str) -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(1)
    if kind == "linear":
        return nn.Linear(7, 5).to(DT), (7,)
    if kind == "conv":
        return nn.Conv2d(2, 3, 3, padding=1, stride=2).to(DT), (2, 5, 5)
    if kind == "conv1d":
        return nn.Conv1d(2, 3, 3, padding=1).to(DT), (2, 6)
    if kind == "convT":
        return nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1).to(DT), (2, 3, 3)
    raise ValueError(kind)


def run_rule(rule, layer, a, r, nonnegative=False):
    out = layer(a).detach()
    ctx = LayerContext(layer, a, out, input_nonnegative=nonnegative)
    return rule.relevance(ctx, r.reshape(out.shape))


CASES = [
    (ZeroRule(), naive.zero),
    (EpsilonRule(0.1), lambda m, b, a, r: naive.zero(m, b, a, r, eps=0.1)),
    (GammaRule(0.3), lambda m, b, a, r: naive.gamma(m, b, a, r, g=0.3)),
    (GeneralizedGammaRule(0.3), lambda m, b, a, r: naive.generalized_gamma(m, b, a, r, g=0.3)),
    (ZPlusRule(), naive.zplus),
    (AlphaBetaRule(2.0, 1.0), naive.alphabeta),
    (AlphaBetaRule(1.5, 0.5), lambda m, b, a, r: naive.alphabeta(m, b, a, r, 1.5, 0.5)),
    (WSquareRule(), naive.wsquare),
    (FlatRule(), naive.flat),
    (ZeroRule(zero_bias=True), lambda m, b, a, r: naive.zero(m, torch.zeros_like(b), a, r)),
    (ZPlusRule(stabilizer=1e-6), lambda m, b, a, r: naive.zplus(m, b, a, r, eps=1e-6)),
]


@pytest.mark.parametrize("kind", ["linear", "conv", "conv1d", "convT"])
@pytest.mark.parametrize(("rule", "formula"), CASES, ids=[repr(c[0]) for c in CASES])
@pytest.mark.parametrize("nonnegative", [False, True])
def test_rule_matches_formula(kind, rule, formula, nonnegative):
    layer, shape = make_layer(kind)
    batch = 3
    a = torch.randn(batch, *shape, dtype=DT)
    if nonnegative:
        a = a.clamp(min=0)
    out_numel = layer(a).shape[1:].numel()
    r = torch.randn(batch, out_numel, dtype=DT)
    got = run_rule(rule, layer, a, r, nonnegative=nonnegative).reshape(batch, -1)
    m, b = naive.dense(layer, shape)
    for n in range(batch):
        want = formula(m, b, a[n].reshape(-1), r[n])
        torch.testing.assert_close(got[n], want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_zbox_matches_formula_with_per_channel_bounds(kind):
    layer, shape = make_layer(kind)
    a = torch.rand(2, *shape, dtype=DT) * 2 - 1
    if kind == "conv":
        low = torch.tensor([-1.0, -2.0], dtype=DT).reshape(2, 1, 1)
        high = torch.tensor([1.0, 2.0], dtype=DT).reshape(2, 1, 1)
    else:
        low, high = torch.tensor(-1.0, dtype=DT), torch.tensor(1.0, dtype=DT)
    r = torch.randn(2, layer(a).shape[1:].numel(), dtype=DT)
    got = run_rule(ZBoxRule(low, high), layer, a, r).reshape(2, -1)
    m, b = naive.dense(layer, shape)
    lo = low.expand(shape).reshape(-1)
    hi = high.expand(shape).reshape(-1)
    for n in range(2):
        torch.testing.assert_close(got[n], naive.zbox(m, b, a[n].reshape(-1), r[n], lo, hi))


def test_layernorm_rule_matches_formula():
    layer = nn.LayerNorm(6).to(DT)
    a = torch.randn(4, 6, dtype=DT)
    r = torch.randn(4, 6, dtype=DT)
    got = run_rule(LayerNormRule(), layer, a, r)
    for n in range(4):
        torch.testing.assert_close(got[n], naive.layernorm(a[n], r[n]))


def test_pass_rule_reshapes():
    layer = nn.Flatten()
    a = torch.randn(2, 3, 4, dtype=DT)
    r = torch.randn(2, 12, dtype=DT)
    torch.testing.assert_close(run_rule(PassRule(), layer, a, r), r.reshape(2, 3, 4))


def test_stabilize_sign_of_zero_is_positive():
    z = torch.tensor([-2.0, 0.0, 3.0])
    torch.testing.assert_close(stabilize(z, 0.5), torch.tensor([-2.5, 0.5, 3.5]))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: AlphaBetaRule(2.0, 0.5), "alpha - beta must equal 1"),
        (lambda: AlphaBetaRule(-1.0, -2.0), "must be >= 0"),
        (lambda: ZBoxRule(None, 1.0), "needs both bounds"),
        (lambda: ZBoxRule(1.0, -1.0), "low must be <= high"),
        (lambda: GammaRule(-0.1), "gamma must be >= 0"),
        (lambda: EpsilonRule(-1.0), "epsilon must be >= 0"),
    ],
)
def test_invalid_rule_parameters_refused_at_construction(make, message):
    with pytest.raises(InvalidRuleError, match=message):
        make()


def test_zbox_without_bounds_is_a_type_error():
    with pytest.raises(TypeError):
        ZBoxRule()  # type: ignore[call-arg]


def test_custom_rule_in_a_dozen_lines():
    """A user-defined rule overrides one piece; here |W| as parameter modifier."""
    from lrp_tasks.engine import LRPRule

    class AbsRule(LRPRule):
        def modify_parameter(self, param, name):
            return param.abs()

    layer, shape = make_layer("linear")
    a = torch.randn(2, *shape, dtype=DT)
    r = torch.randn(2, 5, dtype=DT)
    got = run_rule(AbsRule(), layer, a, r)
    m, b = naive.dense(layer, shape)
    for n in range(2):
        torch.testing.assert_close(got[n], naive.generic(m.abs(), b.abs(), a[n], r[n], 1e-9))


class AbsEpsilon(EpsilonRule):
    """Inherits the LRP-ε fast path's parent, overrides ρ: the override must be used."""

    def modify_parameter(self, param, name):
        return param.abs()


class AbsZPlus(ZPlusRule):
    def modify_parameter(self, param, name):
        return param.abs()


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_subclassed_rules_use_their_modifiers(kind):
    layer, shape = make_layer(kind)
    a = torch.randn(2, *shape, dtype=DT)
    out_shape = layer(a).shape
    r = torch.randn(out_shape, dtype=DT)
    m, b = naive.dense(layer, shape)
    got = run_rule(AbsEpsilon(0.1), layer, a, r)
    assert not AbsEpsilon(0.1).uses_plain_forward and EpsilonRule(0.1).uses_plain_forward
    for n in range(2):
        want = naive.generic(m.abs(), b.abs(), a[n].flatten(), r[n].flatten(), 0.1)
        torch.testing.assert_close(got[n].flatten(), want)
    assert not torch.allclose(got, run_rule(EpsilonRule(0.1), layer, a, r))
    # a sign-splitting rule starts from the modified parameters: z⁺ of |W| on a non-negative input
    # is LRP-0 with |W|, |b|
    a_pos = a.abs()
    for nonneg in (False, True):
        zplus = run_rule(AbsZPlus(), layer, a_pos, r, nonnegative=nonneg)
        for n in range(2):
            want = naive.generic(m.abs(), b.abs(), a_pos[n].flatten(), r[n].flatten(), 1e-9)
            torch.testing.assert_close(zplus[n].flatten(), want)


def test_a_new_rule_gets_repr_equality_and_validation_from_the_base():
    from lrp_tasks.engine import RULES, LRPRule

    class Scaled(LRPRule):
        def __init__(self, factor: float = 2.0, stabilizer: float = 1e-9) -> None:
            self.factor = factor
            self.stabilizer = stabilizer

        def modify_parameter(self, param, name):
            return self.factor * param

    assert repr(Scaled()) == "Scaled()" and repr(Scaled(3.0)) == "Scaled(factor=3.0)"
    assert Scaled(3.0) == Scaled(3.0) and Scaled(3.0) != Scaled(4.0)
    assert RULES["Epsilon"] is EpsilonRule and RULES["ZPlus"] is ZPlusRule
    with pytest.raises(InvalidRuleError, match="stabilizer must be >= 0"):
        ZeroRule(stabilizer=-1.0)


def test_config_rule_table_matches_the_engine_table():
    import inspect

    from lrp_tasks.config.rules import RULE_SPECS
    from lrp_tasks.engine import RULES

    assert set(RULE_SPECS) == set(RULES)
    for name, spec in RULE_SPECS.items():
        sig = inspect.signature(RULES[name].__init__).parameters.values()
        params = {p.name for p in sig if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        assert set(spec.model_fields) - {"kind"} == params, name


class TemperedEpsilon(EpsilonRule):
    """A built-in rule subclassed with a constructor of its own: ε = base / temperature."""

    def __init__(self, temperature: float = 2.0, base: float = 0.1) -> None:
        self.temperature = temperature
        super().__init__(epsilon=base / temperature)


def test_a_subclass_prints_and_compares_by_its_own_constructor():
    rule = TemperedEpsilon(4.0)
    # its own arguments, not EpsilonRule's (epsilon=0.025); defaults left out, ints given for floats as floats
    assert repr(rule) == "TemperedEpsilon(temperature=4.0)"
    assert repr(TemperedEpsilon()) == "TemperedEpsilon()"
    assert repr(TemperedEpsilon(4, base=1)) == "TemperedEpsilon(temperature=4.0, base=1.0)"
    assert rule.epsilon == 0.025 and repr(EpsilonRule(0.025)) == "EpsilonRule(epsilon=0.025)"
    # equality follows the arguments (defaults filled in) and the class, and so does the hash
    assert rule == TemperedEpsilon(temperature=4.0, base=0.1) and hash(rule) == hash(TemperedEpsilon(4, 0.1))
    assert rule != TemperedEpsilon(2.0) and rule != TemperedEpsilon(4.0, base=0.2)
    assert rule != EpsilonRule(0.025) and EpsilonRule(0.025) != rule
    # two subclasses whose epsilon agrees are still told apart by their own arguments
    assert TemperedEpsilon(2.0, base=0.2) != TemperedEpsilon(4.0, base=0.4)

    class Scaled(ZPlusRule):  # inherits ZPlusRule's constructor: prints as ZPlusRule's arguments
        def modify_parameter(self, param, name):
            return 2 * param

    assert repr(Scaled(stabilizer=1e-6)) == "Scaled(stabilizer=1e-06)" and Scaled() != ZPlusRule()
    # the recorded arguments survive pickling and copying (rules travel to Ray workers)
    import copy
    import pickle

    for copied in (pickle.loads(pickle.dumps(rule)), copy.deepcopy(rule)):
        assert copied == rule and repr(copied) == repr(rule)
    low = torch.tensor([-1.0, -2.0]).reshape(2, 1, 1)
    box = ZBoxRule(low, 1.0)
    assert repr(box) == "ZBoxRule(low=[-1.0, -2.0], high=1.0)" and box == copy.deepcopy(box)
    assert box != ZBoxRule(low * 2, 1.0) and ZBoxRule(torch.tensor(0.0), 1) == ZBoxRule(0.0, 1.0)


def test_register_rule_refuses_what_configs_could_not_name():
    from lrp_tasks.engine import RULES, register_rule

    with pytest.raises(ValueError, match="taken by EpsilonRule"):
        register_rule("Epsilon", TemperedEpsilon)
    with pytest.raises(TypeError, match="subclass of LRPRule"):
        register_rule("Tempered", object)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="identifier"):
        register_rule("tempered epsilon", TemperedEpsilon)
    assert register_rule("Epsilon", EpsilonRule) is EpsilonRule and "Tempered" not in RULES
