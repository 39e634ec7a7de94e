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

from .attention import InProjection
from .composites import Composite, FirstLayerTypeMap, FirstMatchTypeMap, GlobalTypeMap
from .functional import Activation, Add, MatMul, Reshape, Softmax
from .layers import (
    ACTIVATION_TYPES,
    AVGPOOL_TYPES,
    BATCHNORM_TYPES,
    CONVOLUTIONS,
    DROPOUT_TYPES,
    ELEMENTWISE_ACTIVATION_TYPES,
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
    LxtGammaRule,
    LxtIdentityRule,
    PassRule,
    SoftmaxRule,
    StopRule,
    UniformRule,
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
        ELEMENTWISE_ACTIVATION_TYPES: PassRule(),
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


# -- transformers (AttnLRP, Achtibat et al. ICML 2024; CP-LRP, Ali et al. 2022) ----------------------
TransformerConvention = Literal["rpj", "lxt"]


def _transformer_composite(
    name: str, cp: bool, epsilon: float, linear_gamma: float | None, conv_gamma: float | None,
    convention: TransformerConvention,
) -> Composite:
    """AttnLRP's rules: identity for element-wise activations, the uniform ε-rule on products of
    activations, the softmax rule (CP-LRP: no relevance through the softmax, v gets all of
    attn·v), LayerNormRule, ε (or generalized γ) on Linear and convolutions.

    ``convention="lxt"`` reproduces LXT 2.1 number for number: LXT computes relevance as
    gradient×input of a patched model, so every stabilizer is 0 (plain LRP-0 on Linear, additions
    and products); zennit's Gamma (stabilizer 1e-6) reaches only layers whose forward runs
    (``MultiheadAttention`` reads its in- and out-projection weights directly, so they keep LRP-0);
    LXT's ε of 1e-10 in its identity rule and zennit bridge is reproduced by LxtIdentityRule and
    LxtGammaRule."""
    if convention not in ("rpj", "lxt"):
        raise ValueError(f"convention must be 'rpj' or 'lxt', got {convention!r}")
    lxt = convention == "lxt"
    stab = 0.0 if lxt else 1e-9
    eps = 0.0 if lxt else epsilon
    gamma_stab = ZENNIT_STABILIZER if lxt else stab

    def dense(gamma: float | None) -> LRPRule:
        if not gamma:
            return EpsilonRule(eps)
        return LxtGammaRule(gamma, stabilizer=gamma_stab) if lxt else GeneralizedGammaRule(gamma, stabilizer=gamma_stab)

    entries: dict[type | tuple[type, ...], LRPRule] = {
        CONVOLUTIONS: dense(conv_gamma),
        nn.Linear: dense(linear_gamma),
        LAYERNORM_TYPES: LayerNormRule(stabilizer=stab),
        DROPOUT_TYPES + RESHAPE_TYPES + BATCHNORM_TYPES + ACTIVATION_TYPES: PassRule(),
        ELEMENTWISE_ACTIVATION_TYPES: LxtIdentityRule() if lxt else PassRule(),
        (Reshape, Activation): PassRule(),
        Add: ZeroRule(stabilizer=stab),
        MatMul: UniformRule(stab, softmax_constant=cp),
        Softmax: StopRule() if cp else SoftmaxRule(),
    }
    primitives = [GlobalTypeMap(entries)]
    if lxt and linear_gamma:
        projections = (InProjection, nn.modules.linear.NonDynamicallyQuantizableLinear)
        primitives.append(GlobalTypeMap({projections: EpsilonRule(0.0)}))
    arguments = [f"epsilon={epsilon}"] if not lxt else []
    arguments += [f"linear_gamma={linear_gamma}"] if linear_gamma else []
    arguments += [f"conv_gamma={conv_gamma}"] if conv_gamma else []
    arguments += ["convention='lxt'"] if lxt else []
    return Composite(*primitives, name=f"{name}({', '.join(arguments)})", stabilizer=stab)


def AttnLRP(
    epsilon: float = 1e-6,
    linear_gamma: float | None = None,
    conv_gamma: float | None = None,
    *,
    convention: TransformerConvention = "rpj",
) -> Composite:
    """AttnLRP (LXT's choices): identity for GELU/SiLU/..., uniform split of q·kᵀ and attn·v, the
    softmax rule, LayerNormRule, ε on Linear and convolutions; `linear_gamma` / `conv_gamma` put
    the generalized γ (zennit's Gamma) there instead, as LXT's ViT recipe does."""
    return _transformer_composite("AttnLRP", False, epsilon, linear_gamma, conv_gamma, convention)


def CPLRP(
    epsilon: float = 1e-6,
    linear_gamma: float | None = None,
    conv_gamma: float | None = None,
    *,
    convention: TransformerConvention = "rpj",
) -> Composite:
    """CP-LRP (conservative propagation, Ali et al. 2022): as AttnLRP, but the attention
    probabilities are constants: no relevance reaches q and k, attn·v gives all of it to v."""
    return _transformer_composite("CPLRP", True, epsilon, linear_gamma, conv_gamma, convention)


TRANSFORMER_PRESETS = {"AttnLRP": AttnLRP, "CPLRP": CPLRP}
"""Presets for transformers (the CNN presets of :data:`PRESETS` work on transformers too)."""

PRESETS = {
    "EpsilonGammaBox": EpsilonGammaBox,
    "EpsilonPlus": EpsilonPlus,
    "EpsilonAlpha2Beta1": EpsilonAlpha2Beta1,
    "EpsilonPlusFlat": EpsilonPlusFlat,
    "EpsilonAlpha2Beta1Flat": EpsilonAlpha2Beta1Flat,
}
