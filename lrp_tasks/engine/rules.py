"""LRP rules as a few small overridable pieces.

A rule maps the relevance at a layer's output to its input. Most rules are the generic
modified-gradient rule of the spec, ``z = ρ(W)·ã + ρ(b)``, ``s = R / stab(z)``,
``c = ρ(W)ᵀ s``, ``R_in = ã ⊙ c``, and only override one or two of ``modify_input``,
``modify_parameter`` and ``modify_denominator``. Rules that split inputs or weights by sign
(ZPlus, AlphaBeta, generalized Gamma, ZBox) override ``relevance`` with their sum of branches.

Writing a new rule::

    class AbsRule(LRPRule):
        def __init__(self, stabilizer: float = 1e-9) -> None:
            self.stabilizer = stabilizer

        def modify_parameter(self, param, name):
            return param.abs()

    register_rule("Abs", AbsRule)   # configs may now write {kind: Abs, stabilizer: 1e-6}

A rule's repr and equality come from the arguments its constructor was called with (recorded by
the base class), so a rule never writes them.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from types import MappingProxyType, UnionType
from typing import Any, ClassVar, Union, get_args, get_origin, get_type_hints

import torch
from torch import Tensor, nn

from .context import LayerContext, needs_autograd_record
from .layers import CONV_TRANSPOSE_TYPES, LAYERNORM_TYPES, POOL_TYPES, WEIGHTED_TYPES, has_weight


class InvalidRuleError(ValueError):
    """A rule was given parameters that make it meaningless (e.g. AlphaBeta with α−β≠1)."""


class RuleLayerMismatchError(TypeError):
    """A rule was assigned to a layer it cannot handle (e.g. ZBox on a pooling layer)."""


def stabilize(z: Tensor, epsilon: float) -> Tensor:
    """z + ε·sign(z), with sign(0) = +1 as in both reference libraries."""
    if epsilon == 0:
        return z
    # copysign gives +ε for +0.0 and −ε only for −0.0, whose contributions are all zero anyway;
    # two passes over z instead of four for a comparison and a select.
    return z + torch.copysign(torch.tensor(epsilon, dtype=z.dtype, device=z.device), z)


def _stabilizer(value: float) -> float:
    value = float(value)
    if not value >= 0:
        raise InvalidRuleError(f"stabilizer must be >= 0, got {value}")
    return value


def _positive(t: Tensor) -> Tensor:
    return t.clamp(min=0)


def _negative(t: Tensor) -> Tensor:
    return t.clamp(max=0)


class LRPRule:
    """Generic modified-gradient LRP rule; subclasses override the small pieces below."""

    #: default stabilizer of the denominator
    stabilizer: float = 1e-9
    #: set the bias to zero in the modified forward (zennit's ``zero_params='bias'``)
    zero_bias: bool = False

    # -- the overridable pieces -------------------------------------------------------------
    def is_compatible(self, layer: nn.Module) -> bool:
        """Layers this rule can be applied to; checked when the analyzer is built."""
        return has_weight(layer)

    def modify_input(self, a: Tensor) -> Tensor:
        return a

    def modify_parameter(self, param: Tensor, name: str) -> Tensor:
        return param

    def modify_denominator(self, z: Tensor) -> Tensor:
        return stabilize(z, self.stabilizer)

    def overrides(self, piece: str) -> bool:
        """Whether this rule's class replaces the base's `piece` (e.g. ``modify_parameter``).
        Fast paths are chosen from this, never from a flag a subclass would inherit."""
        return getattr(type(self), piece) is not getattr(LRPRule, piece)

    @property
    def uses_plain_forward(self) -> bool:
        """ρ and the input modifier are the identity and the generic rule applies: the recorded
        forward output is z (LRP-0/ε), so no modified forward pass is needed."""
        return not (self.overrides("modify_input") or self.overrides("modify_parameter") or self.overrides("relevance"))

    def needs_graph(self, layer: nn.Module) -> bool:
        """Whether the analyzer must record this layer's forward with autograd for this rule."""
        return not has_weight(layer) and needs_autograd_record(layer)

    def parameters_of(self, ctx: LayerContext) -> tuple[Tensor, Tensor | None]:
        """The layer's weight and bias, through ``modify_parameter`` when the class overrides it
        (rules that split by sign start from these)."""
        if not self.overrides("modify_parameter"):
            return ctx.weight, ctx.bias
        return ctx.cached(
            f"rho:{type(self).__name__}:{id(self)}",
            lambda: (
                self.modify_parameter(ctx.weight, "weight"),
                None if ctx.bias is None else self.modify_parameter(ctx.bias, "bias"),
            ),
        )

    def input_of(self, ctx: LayerContext) -> Tensor:
        """The recorded input, through ``modify_input`` when the class overrides it."""
        a = ctx.input.detach()
        return self.modify_input(a) if self.overrides("modify_input") else a

    def input_nonnegative(self, ctx: LayerContext) -> bool:
        return ctx.input_nonnegative and not self.overrides("modify_input")

    # -- the generic rule -------------------------------------------------------------------
    def modified_parameters(self, ctx: LayerContext) -> tuple[Tensor, Tensor | None]:
        """ρ(W), ρ(b), cached per layer while the parameters are unchanged."""

        def compute() -> tuple[Tensor, Tensor | None]:
            weight = self.modify_parameter(ctx.weight, "weight")
            bias = ctx.bias
            if bias is not None and not self.zero_bias:
                return weight, self.modify_parameter(bias, "bias")
            return weight, None

        return ctx.cached(f"{type(self).__name__}:{id(self)}", compute)

    def denominator(self, ctx: LayerContext, z: Tensor) -> Tensor:
        """stab(z); one pass instead of two when z is known to be non-negative (after ReLU)."""
        if ctx.output_nonnegative and type(self).modify_denominator is LRPRule.modify_denominator:
            return z + self.stabilizer
        return self.modify_denominator(z)

    def relevance(self, ctx: LayerContext, relevance: Tensor) -> Tensor:
        """R_in = ã ⊙ ρ(W)ᵀ (R_out / stab(ρ(W)ã + ρ(b)))."""
        if not has_weight(ctx.layer) or (self.uses_plain_forward and not self.zero_bias):
            s = relevance / self.denominator(ctx, ctx.output)
            weight = ctx.weight if has_weight(ctx.layer) else None
            return ctx.vjp(weight, s).mul_(ctx.input.detach())
        a = self.modify_input(ctx.input.detach())
        weight, bias = self.modified_parameters(ctx)
        z = ctx.forward(a, weight, bias)
        s = relevance / self.modify_denominator(z)
        return ctx.vjp(weight, s, a).mul_(a)

    # -- printing and comparing: from the constructor's arguments ----------------------------
    #: constructor parameters the repr shows even at their default value (a rule's defining
    #: parameters, e.g. ε: ``EpsilonRule(epsilon=1e-06)``); other defaults are left out
    shown_defaults: ClassVar[tuple[str, ...]] = ()

    #: the arguments of the constructor call that made this rule, defaults filled in (set by the
    #: ``__init__`` wrapper that ``__init_subclass__`` puts around every rule's own constructor)
    _arguments: Mapping[str, Any] = MappingProxyType({})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not hasattr(init, "_rule_signature"):
            cls.__init__ = _recording(init)  # type: ignore[method-assign]

    def __repr__(self) -> str:
        parameters = constructor_signature(type(self)).parameters
        var_positional = any(p.kind is p.VAR_POSITIONAL and self._arguments.get(n) for n, p in parameters.items())
        args: list[str] = []
        for name, value in self._arguments.items():
            p = parameters.get(name)
            if p is None or p.kind is p.POSITIONAL_ONLY or (p.kind is p.POSITIONAL_OR_KEYWORD and var_positional):
                args.append(repr(_shown(value)))
            elif p.kind is p.VAR_POSITIONAL:
                args += [repr(_shown(v)) for v in value]
            elif p.kind is p.VAR_KEYWORD:
                args += [f"{k}={_shown(v)!r}" for k, v in value.items()]
            elif p.default is p.empty or name in self.shown_defaults or _frozen(value) != _frozen(p.default):
                args.append(f"{name}={_shown(value)!r}")
        return f"{type(self).__name__}({', '.join(args)})"

    def _key(self) -> tuple[Any, ...]:
        return tuple((name, _frozen(value)) for name, value in self._arguments.items())

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._key() == other._key()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self._key()))


def _shown(value: Any) -> Any:
    """A constructor argument as the repr shows it: tensors as a number or a flat list."""
    if isinstance(value, Tensor):
        return value.item() if value.numel() == 1 else value.flatten().tolist()
    return value


def _frozen(value: Any) -> Any:
    """A hashable stand-in of a constructor argument that compares like it is shown."""
    value = _shown(value)
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def _recording(init: Callable[..., None]) -> Callable[..., None]:
    """`init`, recording the arguments of the call on the rule when it is the constructor of the
    rule's own class (not when a subclass's constructor calls it through ``super().__init__``)."""
    signature = inspect.signature(init)
    floats: list[str] | None = None

    @functools.wraps(init)
    def __init__(self: LRPRule, *args: Any, **kwargs: Any) -> None:
        nonlocal floats
        if type(self).__init__ is __init__:
            try:
                bound = signature.bind(self, *args, **kwargs)
            except TypeError:
                pass  # init raises the same error
            else:
                bound.apply_defaults()
                arguments = dict(list(bound.arguments.items())[1:])
                if floats is None:
                    floats = _float_parameters(init, signature)
                for name in floats:
                    if isinstance(arguments.get(name), int) and not isinstance(arguments[name], bool):
                        arguments[name] = float(arguments[name])  # GammaRule(1) is GammaRule(gamma=1.0)
                self._arguments = arguments
        init(self, *args, **kwargs)

    __init__._rule_signature = signature.replace(  # type: ignore[attr-defined]
        parameters=list(signature.parameters.values())[1:]
    )
    return __init__


def _float_parameters(init: Callable[..., None], signature: inspect.Signature) -> list[str]:
    """Parameters annotated ``float`` or a union with float but not int (an int given for them is
    recorded as a float, as the rule itself takes it)."""
    try:
        hints: dict[str, Any] = get_type_hints(init)
    except Exception:  # annotations naming what the rule's module cannot resolve
        hints = {name: p.annotation for name, p in signature.parameters.items()}
    floats = []
    for name, hint in hints.items():
        members = get_args(hint) if isinstance(hint, UnionType) or get_origin(hint) is Union else (hint,)
        if any(m is float or m == "float" for m in members) and int not in members:
            floats.append(name)
    return floats


def constructor_signature(rule: type[LRPRule]) -> inspect.Signature:
    """The parameters a rule class is constructed with (its own or an inherited ``__init__``,
    without ``self``); none for a rule without a constructor (``PassRule``)."""
    return getattr(rule.__init__, "_rule_signature", inspect.Signature())


class ZeroRule(LRPRule):
    """LRP-0: ρ = identity. Equals gradient×input on ReLU networks. Works on any layer."""

    def __init__(self, stabilizer: float = 1e-9, zero_bias: bool = False) -> None:
        self.stabilizer = _stabilizer(stabilizer)
        self.zero_bias = zero_bias

    def is_compatible(self, layer: nn.Module) -> bool:
        return True if not self.zero_bias else has_weight(layer)


class EpsilonRule(ZeroRule):
    """LRP-ε: LRP-0 with a larger stabilizer that absorbs weak or contradictory contributions."""

    shown_defaults = ("epsilon",)

    def __init__(self, epsilon: float = 1e-6, zero_bias: bool = False) -> None:
        if epsilon < 0:
            raise InvalidRuleError(f"EpsilonRule: epsilon must be >= 0, got {epsilon}")
        super().__init__(stabilizer=epsilon, zero_bias=zero_bias)

    @property
    def epsilon(self) -> float:
        return self.stabilizer


class GammaRule(LRPRule):
    """LRP-γ (RelevancePropagation.jl): ρ(W) = W + γW⁺, ρ(b) = b + γb⁺; favours positive evidence."""

    shown_defaults = ("gamma",)

    def __init__(self, gamma: float = 0.25, stabilizer: float = 1e-9, zero_bias: bool = False) -> None:
        if gamma < 0:
            raise InvalidRuleError(f"GammaRule: gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.stabilizer = _stabilizer(stabilizer)
        self.zero_bias = zero_bias

    def modify_parameter(self, param: Tensor, name: str) -> Tensor:
        return param + self.gamma * _positive(param)


class _SignSplitRule(LRPRule):
    """Rules whose relevance is a sum of branches over a⁺/a⁻ and sign-modified weights.

    ``branch_relevance`` runs all branches of one denominator group with a single VJP per
    distinct input part; branches with a⁻ are skipped when the input is known non-negative."""

    def _split(self, ctx: LayerContext) -> tuple[Tensor, Tensor | None]:
        a = self.input_of(ctx)
        if self.input_nonnegative(ctx):
            return a, None
        return _positive(a), _negative(a)

    def _vjp_sum(
        self,
        ctx: LayerContext,
        a_pos: Tensor,
        a_neg: Tensor | None,
        terms: list[tuple[Tensor, Tensor, Tensor]],
    ) -> Tensor:
        """Σ over terms (input part, weight, grad) of part ⊙ Wᵀ grad, grouped by input part."""
        pos = [(w, g) for part, w, g in terms if part is a_pos]
        neg = [(w, g) for part, w, g in terms if a_neg is not None and part is a_neg]
        result = a_pos * sum(ctx.vjp(w, g, a_pos) for w, g in pos)
        if neg:
            result = result + a_neg * sum(ctx.vjp(w, g, a_neg) for w, g in neg)
        return result


class ZPlusRule(_SignSplitRule):
    """z⁺ rule: z = W⁺a⁺ + W⁻a⁻ + b⁺; only positive contributions count (AlphaBeta(1, 0))."""

    def __init__(self, stabilizer: float = 1e-9, zero_bias: bool = False) -> None:
        self.stabilizer = _stabilizer(stabilizer)
        self.zero_bias = zero_bias

    def _parameters(self, ctx: LayerContext) -> tuple[Tensor, Tensor, Tensor | None]:
        def compute() -> tuple[Tensor, Tensor, Tensor | None]:
            weight, bias = self.parameters_of(ctx)
            b_pos = None if bias is None or self.zero_bias else _positive(bias)
            return _positive(weight), _negative(weight), b_pos

        return ctx.cached(f"zplus:{id(self)}", compute)

    def _stabilized_bias(self, ctx: LayerContext, b_pos: Tensor | None) -> Tensor:
        def compute() -> Tensor:
            if b_pos is not None:
                return b_pos + self.stabilizer
            channels = ctx.weight.shape[1 if isinstance(ctx.layer, CONV_TRANSPOSE_TYPES) else 0]
            if isinstance(ctx.layer, CONV_TRANSPOSE_TYPES):
                channels *= ctx.layer.groups
            return torch.full((channels,), self.stabilizer, dtype=ctx.weight.dtype, device=ctx.weight.device)

        return ctx.cached(f"zplus-stab-bias:{id(self)}", compute)

    def relevance(self, ctx: LayerContext, relevance: Tensor) -> Tensor:
        w_pos, w_neg, b_pos = self._parameters(ctx)
        if self.input_nonnegative(ctx) and not self.overrides("modify_denominator"):
            # z = W⁺a + b⁺ ≥ 0, so stab(z) = z + ε: fold ε into the bias, no extra pass
            a = ctx.input.detach()
            z = ctx.forward(a, w_pos, self._stabilized_bias(ctx, b_pos))
            # z is ours: reuse its memory for s (unless autograd is tracking the relevance)
            s = relevance / z if relevance.requires_grad else torch.div(relevance, z, out=z)
            return ctx.vjp(w_pos, s, a).mul_(a)
        a_pos, a_neg = self._split(ctx)
        z = ctx.forward(a_pos, w_pos, b_pos)
        if a_neg is not None:
            z = z + ctx.forward(a_neg, w_neg, None)
        s = relevance / self.modify_denominator(z)
        terms = [(a_pos, w_pos, s)]
        if a_neg is not None:
            terms.append((a_neg, w_neg, s))
        return self._vjp_sum(ctx, a_pos, a_neg, terms)


class AlphaBetaRule(_SignSplitRule):
    """LRP-αβ: positive contributions weighted by α, negative by β, with α − β = 1."""

    shown_defaults = ("alpha", "beta")

    def __init__(
        self, alpha: float = 2.0, beta: float = 1.0, stabilizer: float = 1e-9, zero_bias: bool = False
    ) -> None:
        if alpha < 0 or beta < 0:
            raise InvalidRuleError(f"AlphaBetaRule: alpha and beta must be >= 0, got alpha={alpha}, beta={beta}")
        if abs((alpha - beta) - 1.0) > 1e-12:
            raise InvalidRuleError(
                f"AlphaBetaRule: alpha - beta must equal 1 to conserve relevance, got alpha={alpha}, beta={beta}"
            )
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.stabilizer = _stabilizer(stabilizer)
        self.zero_bias = zero_bias

    def _parameters(self, ctx: LayerContext) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        def compute() -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
            weight, bias = self.parameters_of(ctx)
            if bias is None or self.zero_bias:
                return _positive(weight), _negative(weight), None, None
            return _positive(weight), _negative(weight), _positive(bias), _negative(bias)

        return ctx.cached(f"alphabeta:{id(self)}", compute)

    def relevance(self, ctx: LayerContext, relevance: Tensor) -> Tensor:
        w_pos, w_neg, b_pos, b_neg = self._parameters(ctx)
        a_pos, a_neg = self._split(ctx)
        z_pos = ctx.forward(a_pos, w_pos, b_pos)
        z_neg = ctx.forward(a_pos, w_neg, b_neg)
        if a_neg is not None:
            z_pos = z_pos + ctx.forward(a_neg, w_neg, None)
            z_neg = z_neg + ctx.forward(a_neg, w_pos, None)
        s_pos = self.alpha * relevance / self.modify_denominator(z_pos)
        s_neg = -self.beta * relevance / self.modify_denominator(z_neg)
        terms = [(a_pos, w_pos, s_pos), (a_pos, w_neg, s_neg)]
        if a_neg is not None:
            terms += [(a_neg, w_neg, s_pos), (a_neg, w_pos, s_neg)]
        if self.beta == 0:
            terms = [t for t in terms if t[2] is not s_neg]
        return self._vjp_sum(ctx, a_pos, a_neg, terms)


class GeneralizedGammaRule(_SignSplitRule):
    """zennit's ``Gamma``: positive and negative outputs explained separately, each favouring
    contributions of its own sign by γ; defined for inputs of any sign (needed after LeakyReLU)."""

    shown_defaults = ("gamma",)

    def __init__(self, gamma: float = 0.25, stabilizer: float = 1e-9, zero_bias: bool = False) -> None:
        if gamma < 0:
            raise InvalidRuleError(f"GeneralizedGammaRule: gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.stabilizer = _stabilizer(stabilizer)
        self.zero_bias = zero_bias

    def _parameters(self, ctx: LayerContext) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        def compute() -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
            (w, b), g = self.parameters_of(ctx), self.gamma
            rho_pos = w + g * _positive(w)
            rho_neg = w + g * _negative(w)
            if b is None or self.zero_bias:
                return rho_pos, rho_neg, None, None
            return rho_pos, rho_neg, b + g * _positive(b), b + g * _negative(b)

        return ctx.cached(f"ggamma:{id(self)}", compute)

    def relevance(self, ctx: LayerContext, relevance: Tensor) -> Tensor:
        rho_pos, rho_neg, b_pos, b_neg = self._parameters(ctx)
        a_pos, a_neg = self._split(ctx)
        z_pos = ctx.forward(a_pos, rho_pos, b_pos)
        z_neg = ctx.forward(a_pos, rho_neg, b_neg)
        if a_neg is not None:
            z_pos = z_pos + ctx.forward(a_neg, rho_neg, None)
            z_neg = z_neg + ctx.forward(a_neg, rho_pos, None)
        z = ctx.output.detach()
        zero = torch.zeros((), dtype=z.dtype, device=z.device)
        s_pos = torch.where(z > 0, relevance, zero) / self.modify_denominator(z_pos)
        s_neg = torch.where(z < 0, relevance, zero) / self.modify_denominator(z_neg)
        terms = [(a_pos, rho_pos, s_pos), (a_pos, rho_neg, s_neg)]
        if a_neg is not None:
            terms += [(a_neg, rho_neg, s_pos), (a_neg, rho_pos, s_neg)]
        return self._vjp_sum(ctx, a_pos, a_neg, terms)


class ZBoxRule(LRPRule):
    """z^B rule for an input layer whose inputs lie in [low, high] (pixel bounds).

    z = Wa − W⁺l − W⁻h, R = a⊙c − l⊙c⁺ − h⊙c⁻ with c = Wᵀs, c⁺ = W⁺ᵀs, c⁻ = W⁻ᵀs. Bounds are
    scalars or tensors broadcastable to the input (per-channel bounds: shape (C, 1, 1))."""

    def __init__(
        self, low: float | Tensor | Any, high: float | Tensor | Any, stabilizer: float = 1e-9,
        zero_bias: bool = False,
    ) -> None:
        if low is None or high is None:
            raise InvalidRuleError("ZBoxRule needs both bounds: ZBoxRule(low=..., high=...)")
        self.low = low if isinstance(low, Tensor) else torch.as_tensor(low, dtype=torch.float64)
        self.high = high if isinstance(high, Tensor) else torch.as_tensor(high, dtype=torch.float64)
        if bool((self.low > self.high).any()):
            raise InvalidRuleError("ZBoxRule: low must be <= high everywhere")
        self.stabilizer = _stabilizer(stabilizer)
        self.zero_bias = zero_bias

    def relevance(self, ctx: LayerContext, relevance: Tensor) -> Tensor:
        a = self.input_of(ctx)
        low = self.low.to(device=a.device, dtype=a.dtype).expand_as(a)
        high = self.high.to(device=a.device, dtype=a.dtype).expand_as(a)
        w, _ = self.parameters_of(ctx)
        w_pos, w_neg = ctx.cached(f"zbox:{id(self)}", lambda: (_positive(w), _negative(w)))
        z = ctx.forward(a, w, None) - ctx.forward(low, w_pos, None) - ctx.forward(high, w_neg, None)
        s = relevance / self.modify_denominator(z)
        return a * ctx.vjp(w, s, a) - low * ctx.vjp(w_pos, s, low) - high * ctx.vjp(w_neg, s, high)


class _InputIndependentRule(LRPRule):
    """Rules with ã = 1: z depends only on the input shape, so it is computed on one sample."""

    def relevance(self, ctx: LayerContext, relevance: Tensor) -> Tensor:
        weight, _ = self.modified_parameters(ctx)
        shape = tuple(ctx.input.shape[1:])

        def denominator() -> Tensor:
            one = torch.ones((1, *shape), dtype=ctx.input.dtype, device=ctx.input.device)
            return self.modify_denominator(ctx.forward(one, weight, None))

        s = relevance / ctx.cached(f"{type(self).__name__}-z:{id(self)}:{shape}:{ctx.input.dtype}", denominator)
        return ctx.vjp(weight, s, ctx.input)


class WSquareRule(_InputIndependentRule):
    """w² rule: relevance spread by squared weights, independent of the input (unbounded inputs)."""

    def __init__(self, stabilizer: float = 1e-9) -> None:
        self.stabilizer = _stabilizer(stabilizer)
        self.zero_bias = True

    def modify_parameter(self, param: Tensor, name: str) -> Tensor:
        return param**2


class FlatRule(_InputIndependentRule):
    """Flat rule: each input in a neuron's receptive field gets an equal share."""

    def __init__(self, stabilizer: float = 1e-9) -> None:
        self.stabilizer = _stabilizer(stabilizer)
        self.zero_bias = True

    def modify_parameter(self, param: Tensor, name: str) -> Tensor:
        return torch.ones_like(param)


class PassRule(LRPRule):
    """R_in = R_out: for element-wise or reshaping layers (activations, dropout, flatten...)."""

    def is_compatible(self, layer: nn.Module) -> bool:
        return not isinstance(layer, WEIGHTED_TYPES + POOL_TYPES) and getattr(layer, "pass_compatible", True)

    def needs_graph(self, layer: nn.Module) -> bool:
        return False

    def relevance(self, ctx: LayerContext, relevance: Tensor) -> Tensor:
        if relevance.numel() != ctx.input.numel():
            raise RuntimeError(
                f"PassRule on layer {ctx.index} ({type(ctx.layer).__name__}) needs equal input and output "
                f"sizes, got {tuple(ctx.input.shape)} -> {tuple(relevance.shape)}"
            )
        return relevance.reshape(ctx.input.shape)


class GradientRule(LRPRule):
    """R_in = (∂out/∂in)ᵀ R_out: the plain gradient. zennit's behaviour for layers without a rule
    (max pooling routes relevance to the winner; an unfused BatchNorm rescales it)."""

    def is_compatible(self, layer: nn.Module) -> bool:
        return True

    def needs_graph(self, layer: nn.Module) -> bool:
        return not has_weight(layer) or needs_autograd_record(layer)

    def relevance(self, ctx: LayerContext, relevance: Tensor) -> Tensor:
        if ctx.graph_output is None and has_weight(ctx.layer):
            return ctx.vjp(ctx.weight, relevance)
        return ctx.vjp(None, relevance)


class LayerNormRule(LRPRule):
    """LayerNorm with σ held constant (Ali et al. 2022): R_i = a_i (s_i − mean(s)),
    s = R / stab(a − μ); the centring is the only part that redistributes relevance."""

    def __init__(self, stabilizer: float = 1e-9) -> None:
        self.stabilizer = _stabilizer(stabilizer)

    def is_compatible(self, layer: nn.Module) -> bool:
        return isinstance(layer, LAYERNORM_TYPES) or bool(getattr(layer, "layernorm", False))

    def relevance(self, ctx: LayerContext, relevance: Tensor) -> Tensor:
        return layer_norm_relevance(ctx.input.detach(), relevance, len(ctx.layer.normalized_shape), self)


def layer_norm_relevance(a: Tensor, relevance: Tensor, ndim: int, rule: LRPRule) -> Tensor:
    """LayerNormRule over the last `ndim` dimensions of the input `a` (module or ``F.layer_norm``)."""
    dims = tuple(range(-ndim, 0))
    centred = a - a.mean(dim=dims, keepdim=True)
    s = relevance / rule.modify_denominator(centred)
    return a * (s - s.mean(dim=dims, keepdim=True))


# -- transformers (AttnLRP, Achtibat et al. ICML 2024): rules of function families -----------------
# These rules describe how relevance crosses a MatMul or a Softmax step; the family
# (``functional.py``: MatMul, Softmax) computes it, as for every functional operation.


class UniformRule(LRPRule):
    """AttnLRP's uniform ε-rule for a product of activations (``q @ kᵀ``, ``attn @ v``):
    ``R_i = x_i ⊙ J_iᵀ (R / stab(y, ε)) / n`` for each of the n operands that carry relevance,
    so each operand gets half of a bilinear product's relevance. An operand that is a parameter or
    a constant gets none and does not count (``x @ W`` is a linear step). With
    ``softmax_constant=True`` (CP-LRP) an operand computed from a softmax (the attention
    probabilities) is a constant too: ``attn @ v`` gives all its relevance to v."""

    shown_defaults = ("epsilon",)

    def __init__(self, epsilon: float = 1e-9, softmax_constant: bool = False) -> None:
        self.stabilizer = _stabilizer(epsilon)
        self.softmax_constant = bool(softmax_constant)

    @property
    def epsilon(self) -> float:
        return self.stabilizer

    def is_compatible(self, layer: nn.Module) -> bool:
        return bool(getattr(layer, "bilinear", False))


class GateRule(LRPRule):
    """An element-wise product of two activations where one is a gate (squeeze-and-excitation
    ``x * sigmoid(...)``, gated MLPs): the gate is held constant, so the product is a linear step in
    the gated signal, which gets all the relevance: ``R_x = x ⊙ g ⊙ R / stab(x ⊙ g)`` (R itself, up
    to the stabilizer and broadcasting); the gate's branch gets none. The gate is the operand computed
    through a sigmoid or hard sigmoid (found when the plan is built); ``gate=0`` or ``gate=1`` names
    the operand position instead."""

    shown_defaults = ("epsilon",)

    def __init__(self, epsilon: float = 1e-9, gate: int | None = None) -> None:
        self.stabilizer = _stabilizer(epsilon)
        if gate not in (None, 0, 1):
            raise ValueError(f"gate is the operand position of the gate (0 or 1), got {gate!r}")
        self.gate = gate

    @property
    def epsilon(self) -> float:
        return self.stabilizer

    def is_compatible(self, layer: nn.Module) -> bool:
        return bool(getattr(layer, "elementwise_product", False))


class SoftmaxRule(LRPRule):
    """AttnLRP's rule for a softmax inside a model, s = softmax(x): ``R_x = x ⊙ (R − s·ΣR)``
    (a Taylor decomposition at x with bias; the gradient×input form). Masked positions
    (x = −inf, s = 0) get none."""

    def is_compatible(self, layer: nn.Module) -> bool:
        return bool(getattr(layer, "softmax", False))


class StopRule(LRPRule):
    """No relevance passes into the step's inputs: CP-LRP on a softmax (q and k are constants,
    relevance flows through v only)."""

    def is_compatible(self, layer: nn.Module) -> bool:
        return not isinstance(layer, WEIGHTED_TYPES)

    def needs_graph(self, layer: nn.Module) -> bool:
        return False



# LXT 2.1 computes relevance as gradient×input of a patched model; these two rules reproduce the
# two places where that differs from the rules above by a stabilizer (``convention="lxt"``).
LXT_EPSILON = 1e-10


class LxtIdentityRule(PassRule):
    """LXT's identity rule for GELU/SiLU as LXT computes it: ``R_in = R · x / (x + 1e-10)``
    (the gradient y/(x + ε) with ε added unsigned, times x) — PassRule up to that ε."""

    def relevance(self, ctx: LayerContext, relevance: Tensor) -> Tensor:
        x = ctx.input.detach()
        return super().relevance(ctx, relevance) * (x / (x + LXT_EPSILON))


class LxtGammaRule(GeneralizedGammaRule):
    """zennit's Gamma through LXT's zennit bridge: the generalized γ, whose input relevance LXT
    divides by stab(a, 1e-10) and the next gradient×input multiplies by a again."""

    def relevance(self, ctx: LayerContext, relevance: Tensor) -> Tensor:
        a = ctx.input.detach()
        return super().relevance(ctx, relevance) * (a / stabilize(a, LXT_EPSILON))


RULES: dict[str, type[LRPRule]] = {
    "Zero": ZeroRule,
    "Epsilon": EpsilonRule,
    "Gamma": GammaRule,
    "GeneralizedGamma": GeneralizedGammaRule,
    "ZPlus": ZPlusRule,
    "AlphaBeta": AlphaBetaRule,
    "ZBox": ZBoxRule,
    "WSquare": WSquareRule,
    "Flat": FlatRule,
    "Pass": PassRule,
    "LayerNorm": LayerNormRule,
    "Gradient": GradientRule,
    "Uniform": UniformRule,
    "Gate": GateRule,
    "Softmax": SoftmaxRule,
    "Stop": StopRule,
    "LxtIdentity": LxtIdentityRule,
    "LxtGamma": LxtGammaRule,
}
"""Rule names as configs write them → classes: the one table of rules. The config schema derives
each rule's spec from its class's constructor, and ``lrp_tasks.engine`` exports every class."""


def register_rule(name: str, rule: type[LRPRule]) -> type[LRPRule]:
    """Add `rule` to :data:`RULES` under `name`, the name configs write (``{kind: name, ...}``);
    returns the class. A name already bound to another class is refused."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a rule name is an identifier such as 'Epsilon', got {name!r}")
    if not (isinstance(rule, type) and issubclass(rule, LRPRule)):
        raise TypeError(f"register_rule({name!r}, ...) needs a subclass of LRPRule, got {rule!r}")
    if RULES.get(name, rule) is not rule:
        raise ValueError(f"rule name {name!r} is taken by {RULES[name].__name__}")
    RULES[name] = rule
    return rule
