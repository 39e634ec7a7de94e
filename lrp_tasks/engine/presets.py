"""The five composite presets of both reference libraries, with a switch for their conventions.

``convention="rpj"`` (default) follows RelevancePropagation.jl: stabilizer 1e-9, the special
first-layer rule only when the model's first layer is a convolution, pooling left to ZeroRule —
with one deliberate difference: EpsilonGammaBox uses the generalized Gamma (zennit's) on
convolutions, not RelevancePropagation.jl's plain Gamma. Plain Gamma is only safe where a ReLU
follows the convolution: a neuron with a negative output that still receives relevance (the
last convolution of a residual branch, a shortcut's 1×1 convolution: they feed an addition, not
a ReLU) gets the denominator (W + γW⁺)a + b + γb⁺, which moves from z < 0 towards 0 as γ grows
and crosses it, so relevance divides by ~0 and explodes (−157 … 597 on the trained digits ResNet
for a seed of 1, −101 … 1.7 on a random ResNet-18, −1.3e8 … 1.9e6 reported on ResNet-50). The
generalized Gamma explains a negative output with W + γW⁻, whose denominator is at least |z|
away from 0, and is identical to plain Gamma for positive outputs of non-negative inputs, so a
network whose every convolution feeds a ReLU (VGG) gets the same relevance as before.

``convention="zennit"`` reproduces zennit 1.0 number for number: every stabilizer
1e-6, generalized Gamma, the special rule on the first Linear-or-Conv wherever it sits,
average pooling normalised with 1e-6, and layers without a rule (max pooling...) passed the
plain gradient."""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from .composites import Composite, FirstLayerTypeMap, FirstMatchTypeMap, GlobalTypeMap
from .functional import Activation, Add, Reshape
from .layers import (
    ACTIVATION_TYPES,
    AVGPOOL_TYPES,
    BATCHNORM_TYPES,
    CONVOLUTIONS,
    DROPOUT_TYPES,
    LAYERNORM_TYPES,
    RESHAPE_TYPES,
)
from .rules import (
    AlphaBetaRule,
    EpsilonRule,
    FlatRule,
    GeneralizedGammaRule,
    GradientRule,
    LayerNormRule,
    LRPRule,
    PassRule,
    ZBoxRule,
    ZeroRule,
    ZPlusRule,
)

Convention = Literal["rpj", "zennit"]
CONVENTIONS = ("rpj", "zennit")
ZENNIT_STABILIZER = 1e-6


def _stabilizer(convention: Convention) -> float:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    return ZENNIT_STABILIZER if convention == "zennit" else 1e-9


def _base_map(conv_rule: LRPRule, epsilon: float, convention: Convention) -> GlobalTypeMap:
    """Shared by all presets: Linear → ε, LayerNorm → LayerNormRule, element-wise layers → Pass,
    additions → the proportional split with the convention's stabilizer (zennit: Norm on Sum)."""
    stab = _stabilizer(convention)
    entries: dict[type | tuple[type, ...], LRPRule] = {
        CONVOLUTIONS: conv_rule,
        nn.Linear: EpsilonRule(epsilon),
        LAYERNORM_TYPES: LayerNormRule(stabilizer=stab),
        DROPOUT_TYPES + RESHAPE_TYPES + BATCHNORM_TYPES + ACTIVATION_TYPES: PassRule(),
        Add: ZeroRule(stabilizer=stab),
    }
    if convention == "rpj":
        entries[(Reshape, Activation)] = PassRule()
    if convention == "zennit":
        entries[AVGPOOL_TYPES] = ZeroRule(stabilizer=stab)
    return GlobalTypeMap(entries)


def _composite(
    name: str,
    conv_rule: LRPRule,
    first_rule: LRPRule | None,
    epsilon: float,
    convention: Convention,
    first_includes_linear: bool,
) -> Composite:
    primitives = [_base_map(conv_rule, epsilon, convention)]
    if first_rule is not None:
        if convention == "zennit":
            types = (*CONVOLUTIONS, nn.Linear) if first_includes_linear else CONVOLUTIONS
            primitives.append(FirstMatchTypeMap({types: first_rule}))
        else:
            primitives.append(FirstLayerTypeMap({CONVOLUTIONS: first_rule}))
    # zennit passes the plain gradient where no rule applies (max pooling, functional operations
    # other than its canonized Sum); RelevancePropagation.jl's default is each step's own
    default = GradientRule() if convention == "zennit" else None
    suffix = "" if convention == "rpj" else ", convention='zennit'"
    return Composite(*primitives, default=default, name=f"{name}{suffix}", stabilizer=_stabilizer(convention))


def EpsilonGammaBox(
    low: float | Tensor,
    high: float | Tensor,
    epsilon: float = 1e-6,
    gamma: float = 0.25,
    *,
    convention: Convention = "rpj",
) -> Composite:
    """ZBox on the first convolution, generalized Gamma on other convolutions, ε on dense layers
    (the generalized Gamma in both conventions: plain Gamma explodes after residual additions, see
    the module's docstring)."""
    stab = _stabilizer(convention)
    gamma_rule: LRPRule = GeneralizedGammaRule(gamma, stabilizer=stab)
    return _composite(
        "EpsilonGammaBox", gamma_rule, ZBoxRule(low, high, stabilizer=stab), epsilon, convention, False
    )


def EpsilonPlus(epsilon: float = 1e-6, *, convention: Convention = "rpj") -> Composite:
    """z⁺ on convolutions, ε on dense layers."""
    stab = _stabilizer(convention)
    return _composite("EpsilonPlus", ZPlusRule(stabilizer=stab), None, epsilon, convention, False)


def EpsilonAlpha2Beta1(epsilon: float = 1e-6, *, convention: Convention = "rpj") -> Composite:
    """α2β1 on convolutions, ε on dense layers."""
    stab = _stabilizer(convention)
    rule = AlphaBetaRule(2.0, 1.0, stabilizer=stab)
    return _composite("EpsilonAlpha2Beta1", rule, None, epsilon, convention, False)


def EpsilonPlusFlat(epsilon: float = 1e-6, *, convention: Convention = "rpj") -> Composite:
    """EpsilonPlus with the Flat rule on the first convolution (zennit: first Linear-or-Conv)."""
    stab = _stabilizer(convention)
    return _composite(
        "EpsilonPlusFlat", ZPlusRule(stabilizer=stab), FlatRule(stabilizer=stab), epsilon, convention, True
    )


def EpsilonAlpha2Beta1Flat(
    epsilon: float = 1e-6, *, convention: Convention = "rpj"
) -> Composite:
    """EpsilonAlpha2Beta1 with the Flat rule on the first convolution (zennit: first Linear-or-Conv)."""
    stab = _stabilizer(convention)
    rule = AlphaBetaRule(2.0, 1.0, stabilizer=stab)
    return _composite(
        "EpsilonAlpha2Beta1Flat", rule, FlatRule(stabilizer=stab), epsilon, convention, True
    )


PRESETS = {
    "EpsilonGammaBox": EpsilonGammaBox,
    "EpsilonPlus": EpsilonPlus,
    "EpsilonAlpha2Beta1": EpsilonAlpha2Beta1,
    "EpsilonPlusFlat": EpsilonPlusFlat,
    "EpsilonAlpha2Beta1Flat": EpsilonAlpha2Beta1Flat,
}
