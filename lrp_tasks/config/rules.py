"""LRP rules and layer types as they are written in a config file.

A rule is written in its canonical form ``{kind: Epsilon, epsilon: 0.01}``, or with two
shorthands that are normalised to it: a bare name (``ZPlus``) and a one-key mapping
(``{Epsilon: {epsilon: 0.01}}``). Names are the keys of the engine's rule table
(``lrp_tasks.engine.RULES``, name → class); each spec's fields are exactly that class's keyword
arguments, so building the engine object is ``RULES[kind](**params)`` (a test keeps the two
tables in step).
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BeforeValidator, Field, model_validator

from .base import Bool, NonNegativeFloat, NumberOrNested, StrictModel, invalid

DEFAULT_STABILIZER = 1e-9


class _RuleSpec(StrictModel):
    def engine_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the engine's rule class."""
        return self.model_dump(exclude={"kind"})


class ZeroSpec(_RuleSpec):
    """LRP-0 (``ZeroRule``)."""

    kind: Literal["Zero"]
    stabilizer: NonNegativeFloat = DEFAULT_STABILIZER
    zero_bias: Bool = False


class EpsilonSpec(_RuleSpec):
    """LRP-ε (``EpsilonRule``)."""

    kind: Literal["Epsilon"]
    epsilon: NonNegativeFloat = 1e-6
    zero_bias: Bool = False


class GammaSpec(_RuleSpec):
    """LRP-γ (``GammaRule``)."""

    kind: Literal["Gamma"]
    gamma: NonNegativeFloat = 0.25
    stabilizer: NonNegativeFloat = DEFAULT_STABILIZER
    zero_bias: Bool = False


class GeneralizedGammaSpec(_RuleSpec):
    """zennit's Gamma, defined for inputs of any sign (``GeneralizedGammaRule``)."""

    kind: Literal["GeneralizedGamma"]
    gamma: NonNegativeFloat = 0.25
    stabilizer: NonNegativeFloat = DEFAULT_STABILIZER
    zero_bias: Bool = False


class ZPlusSpec(_RuleSpec):
    """z⁺ (``ZPlusRule``)."""

    kind: Literal["ZPlus"]
    stabilizer: NonNegativeFloat = DEFAULT_STABILIZER
    zero_bias: Bool = False


class AlphaBetaSpec(_RuleSpec):
    """LRP-αβ (``AlphaBetaRule``); α − β must be 1 or relevance is not conserved."""

    kind: Literal["AlphaBeta"]
    alpha: NonNegativeFloat = 2.0
    beta: NonNegativeFloat = 1.0
    stabilizer: NonNegativeFloat = DEFAULT_STABILIZER
    zero_bias: Bool = False

    @model_validator(mode="after")
    def _conserving(self) -> AlphaBetaSpec:
        # same tolerance as the engine's AlphaBetaRule, so the config never accepts what it refuses
        if abs((self.alpha - self.beta) - 1.0) > 1e-12:
            raise invalid(
                "alpha_beta",
                f"AlphaBeta needs alpha - beta = 1 to conserve relevance, got alpha={self.alpha}, beta={self.beta}",
            )
        return self


def require_bounds(data: Any, owner: str) -> Any:
    """Refuse a box rule without both bounds with a message that says which are missing."""
    if isinstance(data, dict):
        missing = [key for key in ("low", "high") if data.get(key) is None]
        if missing:
            raise invalid(
                "missing_bounds",
                f"{owner} needs both bounds 'low' and 'high' (the smallest and largest input values, "
                f"e.g. low: 0.0, high: 1.0); missing: {', '.join(missing)}",
            )
    return data


def check_bounds(low: Any, high: Any, owner: str) -> None:
    """Bounds must broadcast against each other and satisfy low <= high everywhere."""
    try:
        lo, hi = np.broadcast_arrays(np.asarray(low, dtype=float), np.asarray(high, dtype=float))
    except ValueError:
        raise invalid(
            "bounds_shape",
            f"{owner}: low (shape {np.shape(low)}) and high (shape {np.shape(high)}) do not broadcast together",
        ) from None
    if (lo > hi).any():
        raise invalid("bounds_order", f"{owner}: low must be <= high everywhere")


class ZBoxSpec(_RuleSpec):
    """z^B for the input layer (``ZBoxRule``): inputs lie in [low, high]; per-channel bounds are
    nested lists of shape (C, 1, 1)."""

    kind: Literal["ZBox"]
    low: NumberOrNested
    high: NumberOrNested
    stabilizer: NonNegativeFloat = DEFAULT_STABILIZER
    zero_bias: Bool = False

    @model_validator(mode="before")
    @classmethod
    def _has_bounds(cls, data: Any) -> Any:
        return require_bounds(data, "ZBox")

    @model_validator(mode="after")
    def _ordered(self) -> ZBoxSpec:
        check_bounds(self.low, self.high, "ZBox")
        return self


class WSquareSpec(_RuleSpec):
    """w² (``WSquareRule``)."""

    kind: Literal["WSquare"]
    stabilizer: NonNegativeFloat = DEFAULT_STABILIZER


class FlatSpec(_RuleSpec):
    """Flat (``FlatRule``)."""

    kind: Literal["Flat"]
    stabilizer: NonNegativeFloat = DEFAULT_STABILIZER


class PassSpec(_RuleSpec):
    """Relevance passed through unchanged (``PassRule``)."""

    kind: Literal["Pass"]


class LayerNormSpec(_RuleSpec):
    """LayerNorm with σ held constant (``LayerNormRule``)."""

    kind: Literal["LayerNorm"]
    stabilizer: NonNegativeFloat = DEFAULT_STABILIZER


class GradientSpec(_RuleSpec):
    """The plain gradient (``GradientRule``)."""

    kind: Literal["Gradient"]


RULE_SPECS: dict[str, type[_RuleSpec]] = {
    spec.model_fields["kind"].annotation.__args__[0]: spec  # type: ignore[union-attr]
    for spec in (
        ZeroSpec,
        EpsilonSpec,
        GammaSpec,
        GeneralizedGammaSpec,
        ZPlusSpec,
        AlphaBetaSpec,
        ZBoxSpec,
        WSquareSpec,
        FlatSpec,
        PassSpec,
        LayerNormSpec,
        GradientSpec,
    )
}


def suggestion(name: str, known: list[str]) -> str:
    """A ``; did you mean 'X'?`` suffix for a misspelt name, or nothing."""
    candidates = {k.lower(): k for k in known}
    stripped = name.removesuffix("Rule").lower()
    if stripped in candidates:
        return f"; did you mean {candidates[stripped]!r}?"
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _unknown_rule(name: Any) -> ValueError:
    known = list(RULE_SPECS)
    hint = suggestion(name, known) if isinstance(name, str) else ""
    return invalid("unknown_rule", f"unknown rule {name!r}{hint} (known rules: {', '.join(known)})")


def normalise_rule(value: Any) -> Any:
    """Turn the shorthands ``Name`` and ``{Name: {params}}`` into ``{kind: Name, **params}``."""
    if isinstance(value, str):
        if value not in RULE_SPECS:
            raise _unknown_rule(value)
        return {"kind": value}
    if isinstance(value, dict):
        if "kind" in value:
            if value["kind"] not in RULE_SPECS:
                raise _unknown_rule(value["kind"])
            return value
        if len(value) == 1:
            [(name, params)] = value.items()
            if name not in RULE_SPECS:
                raise _unknown_rule(name)
            if params is None:
                params = {}
            if not isinstance(params, dict):
                raise invalid(
                    "rule_params",
                    f"parameters of rule {name!r} must be a mapping such as {{epsilon: 0.01}}, got {params!r}",
                )
            return {"kind": name, **params}
    if isinstance(value, _RuleSpec):
        return value
    raise invalid(
        "rule_shape",
        f"a rule is a name (ZPlus), {{Name: {{params}}}} or {{kind: Name, params...}}, got {value!r}",
    )


RuleSpec = Annotated[
    ZeroSpec
    | EpsilonSpec
    | GammaSpec
    | GeneralizedGammaSpec
    | ZPlusSpec
    | AlphaBetaSpec
    | ZBoxSpec
    | WSquareSpec
    | FlatSpec
    | PassSpec
    | LayerNormSpec
    | GradientSpec,
    Field(discriminator="kind"),
    BeforeValidator(normalise_rule),
]
"""Any rule; accepts the canonical form and both shorthands."""


# -- layer types ----------------------------------------------------------------------------------

LAYER_TYPE_GROUPS: dict[str, tuple[str, ...]] = {
    "Convolution": (
        "Conv1d",
        "Conv2d",
        "Conv3d",
        "ConvTranspose1d",
        "ConvTranspose2d",
        "ConvTranspose3d",
    ),
    "BatchNorm": ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d"),
    "AvgPool": (
        "AvgPool1d",
        "AvgPool2d",
        "AvgPool3d",
        "AdaptiveAvgPool1d",
        "AdaptiveAvgPool2d",
        "AdaptiveAvgPool3d",
    ),
    "MaxPool": (
        "MaxPool1d",
        "MaxPool2d",
        "MaxPool3d",
        "AdaptiveMaxPool1d",
        "AdaptiveMaxPool2d",
        "AdaptiveMaxPool3d",
    ),
}
"""Names that stand for several ``torch.nn`` classes (zennit's type groups)."""

FUNCTION_FAMILIES = ("Add", "Cat", "Reshape", "Route", "Activation", "MaxPooling", "AvgPooling")
"""Families of functional operations in traced models (``out += identity`` is an ``Add``); they
are classes of ``lrp_tasks.engine`` and select steps like layer types do."""


def _module_class_names() -> list[str]:
    import torch.nn as nn  # lazy: the schema itself must not need torch to be imported

    return sorted(
        name for name in dir(nn) if isinstance(getattr(nn, name), type) and issubclass(getattr(nn, name), nn.Module)
    )


def resolve_layer_type(name: str) -> tuple[type, ...]:
    """The ``torch.nn`` classes a layer type name stands for; ValueError if there are none."""
    import torch.nn as nn

    if name in LAYER_TYPE_GROUPS:
        return tuple(getattr(nn, member) for member in LAYER_TYPE_GROUPS[name])
    if name in FUNCTION_FAMILIES:
        from lrp_tasks.engine import functional  # lazy: pure torch, only when the name is used

        return (getattr(functional, name),)
    cls = getattr(nn, name, None)
    if isinstance(cls, type) and issubclass(cls, nn.Module):
        return (cls,)
    raise ValueError(name)


def _check_layer_types(value: Any) -> Any:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise invalid("layer_type_shape", f"expected a torch.nn class name or a non-empty list of them, got {value!r}")
    for name in names:
        try:
            resolve_layer_type(name)
        except ValueError:
            known = _module_class_names() + list(LAYER_TYPE_GROUPS) + list(FUNCTION_FAMILIES)
            raise invalid(
                "unknown_layer_type",
                f"unknown layer type {name!r}{suggestion(name, known)} (use a torch.nn class name such as "
                f"Conv2d or Linear, one of the groups {', '.join(LAYER_TYPE_GROUPS)}, or a family of functional "
                f"operations: {', '.join(FUNCTION_FAMILIES)})",
            ) from None
    return names


LayerTypes = Annotated[list[str], BeforeValidator(_check_layer_types)]
"""One or more ``torch.nn`` class names (``Conv2d``) or groups (``Convolution``); a single name
may be written without the list."""
