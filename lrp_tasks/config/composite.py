"""Which LRP rule applies to which layer, as written in a config file.

Two shapes:

* a preset, by name (``composite: EpsilonPlusFlat``) or with parameters
  (``composite: {preset: EpsilonGammaBox, low: -1, high: 1}``);
* an ordered list of entries, each a layer selector and a rule
  (``composite: {rules: [{type: Conv2d, rule: ZPlus}, {first: true, rule: Flat}]}``).

Each entry maps to one engine primitive (see ``lrp_tasks.audit.composite``) and the list is passed
to the engine's ``Composite`` in order: when several entries select a layer, the LAST one wins;
layers no entry selects get ``default`` (LRP-0 unless given). Layer positions count the layers of
the flattened model from 0 (negative indices from the end); names are the model's module names,
exact or shell-style patterns (``features.*``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Discriminator, Field, StrictInt, Tag, model_validator

from .base import (
    NonEmptyStr,
    NonNegativeFloat,
    NonNegativeInt,
    NumberOrNested,
    PositiveInt,
    StrictModel,
    invalid,
)
from .rules import LayerTypes, RuleSpec, check_bounds, require_bounds, suggestion

Convention = Literal["rpj", "zennit"]
"""``rpj``: this project's conventions (RelevancePropagation.jl); ``zennit``: reproduce zennit 1.0."""


class _Preset(StrictModel):
    def engine_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the engine's preset class."""
        return self.model_dump(exclude={"preset"})


class EpsilonGammaBoxSpec(_Preset):
    """ZBox on the first layer, γ on convolutions, ε on dense layers; needs the input bounds."""

    preset: Literal["EpsilonGammaBox"]
    low: NumberOrNested
    high: NumberOrNested
    epsilon: NonNegativeFloat = 1e-6
    gamma: NonNegativeFloat = 0.25
    convention: Convention = "rpj"

    @model_validator(mode="before")
    @classmethod
    def _has_bounds(cls, data: Any) -> Any:
        return require_bounds(data, "EpsilonGammaBox")

    @model_validator(mode="after")
    def _ordered(self) -> EpsilonGammaBoxSpec:
        check_bounds(self.low, self.high, "EpsilonGammaBox")
        return self


class EpsilonPlusSpec(_Preset):
    """z⁺ on convolutions, ε on dense layers."""

    preset: Literal["EpsilonPlus"]
    epsilon: NonNegativeFloat = 1e-6
    convention: Convention = "rpj"


class EpsilonAlpha2Beta1Spec(_Preset):
    """α2β1 on convolutions, ε on dense layers."""

    preset: Literal["EpsilonAlpha2Beta1"]
    epsilon: NonNegativeFloat = 1e-6
    convention: Convention = "rpj"


class EpsilonPlusFlatSpec(_Preset):
    """EpsilonPlus with Flat on the first weighted layer (inputs of any range)."""

    preset: Literal["EpsilonPlusFlat"]
    epsilon: NonNegativeFloat = 1e-6
    convention: Convention = "rpj"


class EpsilonAlpha2Beta1FlatSpec(_Preset):
    """EpsilonAlpha2Beta1 with Flat on the first weighted layer."""

    preset: Literal["EpsilonAlpha2Beta1Flat"]
    epsilon: NonNegativeFloat = 1e-6
    convention: Convention = "rpj"


TransformerConvention = Literal["rpj", "lxt"]


class AttnLRPSpec(_Preset):
    """AttnLRP for transformers: identity for GELU/SiLU, uniform split of q·kᵀ and attn·v, the
    softmax rule, LayerNormRule, ε on Linear and convolutions (γ where given)."""

    preset: Literal["AttnLRP"]
    epsilon: NonNegativeFloat = 1e-6
    linear_gamma: NonNegativeFloat | None = None
    """generalized γ (zennit's Gamma) on Linear layers instead of ε, as LXT's ViT recipe (none: ε)"""
    conv_gamma: NonNegativeFloat | None = None
    """generalized γ (zennit's Gamma) on convolutions instead of ε (none: ε)"""
    convention: TransformerConvention = "rpj"
    """rpj: this engine's stabilizers; lxt: reproduce LXT 2.1's numbers"""


class CPLRPSpec(AttnLRPSpec):
    """CP-LRP for transformers: as AttnLRP, but no relevance through the softmax (q and k are
    constants; attn·v gives all of it to v)."""

    preset: Literal["CPLRP"]  # type: ignore[assignment]


PRESET_SPECS: dict[str, type[_Preset]] = {
    spec.model_fields["preset"].annotation.__args__[0]: spec  # type: ignore[union-attr]
    for spec in (
        EpsilonGammaBoxSpec,
        EpsilonPlusSpec,
        EpsilonAlpha2Beta1Spec,
        EpsilonPlusFlatSpec,
        EpsilonAlpha2Beta1FlatSpec,
        AttnLRPSpec,
        CPLRPSpec,
    )
}

PresetSpec = Annotated[
    EpsilonGammaBoxSpec
    | EpsilonPlusSpec
    | EpsilonAlpha2Beta1Spec
    | EpsilonPlusFlatSpec
    | EpsilonAlpha2Beta1FlatSpec
    | AttnLRPSpec
    | CPLRPSpec,
    Field(discriminator="preset"),
]

_SELECTORS = ("name", "index", "range", "first", "last", "first_n", "first_match")


class RuleEntry(StrictModel):
    """One entry of a rules composite: a layer selector and the rule for the layers it selects.

    Selectors (at most one of name/index/range/first/last/first_n/first_match; ``type`` narrows
    range, first, last, first_n and first_match to layers of that type, or alone selects every
    layer of the type; no selector at all selects every layer):

    * ``type: Conv2d`` (or a list, or a group such as ``Convolution``) → GlobalTypeMap
    * ``name: features.0`` (or a list of module names) → NameMap
    * ``index: 3`` → LayerMap; ``range: [2, 5]`` (start inclusive, stop exclusive) → RangeMap,
      with ``type`` → RangeTypeMap
    * ``first: true`` / ``last: true`` → First/LastLayerMap, with ``type`` → First/LastLayerTypeMap
    * ``first_n: 2`` with ``type`` → FirstNTypeMap (those of the first n layers that match)
    * ``first_match: true`` with ``type`` → FirstMatchTypeMap (the first matching layer, wherever)
    """

    type: LayerTypes | None = None
    """torch.nn class name (``Conv2d``), group (``Convolution``, ``BatchNorm``, ``AvgPool``, ``MaxPool``) or a list."""
    name: (
        Annotated[
            list[NonEmptyStr],
            BeforeValidator(lambda v: [v] if isinstance(v, str) else v, json_schema_input_type=str | list[str]),
        ]
        | None
    ) = None
    """Module names or shell-style patterns (``features.*``); not with ``type``."""
    index: StrictInt | None = None
    """Position of one layer in the flattened model, from 0 (negative: from the end); not with ``type``."""
    range: tuple[NonNegativeInt, NonNegativeInt] | None = None
    """``[start, stop]`` layer positions, stop exclusive."""
    first: Literal[True] | None = None
    """Select the first layer (with ``type``: only if it is of that type)."""
    last: Literal[True] | None = None
    """Select the last layer (with ``type``: only if it is of that type)."""
    first_n: PositiveInt | None = None
    """With ``type``: the layers of that type among the first n layers."""
    first_match: Literal[True] | None = None
    """With ``type``: the first layer of that type, wherever it is."""
    rule: RuleSpec
    """The rule: ``Name``, ``{kind: Name, param: value}`` or ``{Name: {param: value}}``."""

    @model_validator(mode="after")
    def _one_selector(self) -> RuleEntry:
        chosen = [key for key in _SELECTORS if getattr(self, key) is not None]
        if len(chosen) > 1:
            raise invalid(
                "selector_conflict",
                f"choose one selector of {', '.join(_SELECTORS)}; got {', '.join(chosen)}",
            )
        if self.type is not None and chosen and chosen[0] in ("name", "index"):
            raise invalid(
                "selector_conflict",
                f"'{chosen[0]}' selects specific layers and cannot be combined with 'type' "
                "(use range/first/last/first_n with type)",
            )
        for key in ("first_n", "first_match"):
            if getattr(self, key) is not None and self.type is None:
                raise invalid("selector_missing_type", f"{key} needs a type: the layers of that type it selects")
        if self.range is not None and self.range[0] >= self.range[1]:
            raise invalid(
                "empty_range",
                f"range [start, stop] needs start < stop (stop is exclusive), got {list(self.range)}",
            )
        return self

    @property
    def selector(self) -> str:
        """The positional selector in use ("all" when there is none)."""
        return next((key for key in _SELECTORS if getattr(self, key) is not None), "all")


class RulesCompositeSpec(StrictModel):
    """An explicit, ordered list of rule entries."""

    rules: list[RuleEntry] = Field(min_length=1)
    """Ordered entries; where several select a layer, the last one wins."""
    default: RuleSpec | None = None
    """Rule of the layers no entry selects (the engine's default, LRP-0, when not given)."""


def _normalise_composite(value: Any) -> Any:
    """A bare preset name becomes ``{preset: name}``; unknown presets get a clear message."""
    if isinstance(value, str):
        value = {"preset": value}
    if isinstance(value, dict):
        if "preset" in value and "rules" in value:
            raise invalid("composite_shape", "a composite is either a preset or a list of rules, not both")
        if "preset" in value and value["preset"] not in PRESET_SPECS:
            name = value["preset"]
            known = list(PRESET_SPECS)
            hint = suggestion(name, known) if isinstance(name, str) else ""
            raise invalid("unknown_preset", f"unknown preset {name!r}{hint} (known presets: {', '.join(known)})")
        if "preset" not in value and "rules" not in value:
            raise invalid(
                "composite_shape",
                "a composite is a preset name, {preset: Name, params...} or {rules: [...]}; "
                f"got keys {', '.join(map(str, value)) or 'none'}",
            )
    return value


def _composite_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        return "rules" if "rules" in value else "preset"
    if isinstance(value, RulesCompositeSpec):
        return "rules"
    if isinstance(value, _Preset):
        return "preset"
    return None


CompositeSpec = Annotated[
    Annotated[PresetSpec, Tag("preset")] | Annotated[RulesCompositeSpec, Tag("rules")],
    Discriminator(
        _composite_tag,
        custom_error_type="composite_shape",
        custom_error_message="a composite is a preset name, {preset: Name, params...} or {rules: [...]}",
    ),
    # the form (JSON schema) accepts what YAML accepts: a preset's name is a composite too
    BeforeValidator(_normalise_composite, json_schema_input_type=str | PresetSpec | RulesCompositeSpec),
]
"""A preset or an explicit rules list (see the module docstring)."""
