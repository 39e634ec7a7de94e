"""LRP rules and layer types as they are written in a config file.

A rule is written in its canonical form ``{kind: Epsilon, epsilon: 0.01}``, or with two
shorthands that are normalised to it: a bare name (``ZPlus``) and a one-key mapping
(``{Epsilon: {epsilon: 0.01}}``). Names are the keys of the engine's rule table
(``lrp_tasks.engine.RULES``, name → class), read when a config is validated; each rule's spec is
derived from its class's constructor (its fields are exactly the keyword arguments, with their
defaults), so building the engine object is ``RULES[kind](**params)`` and a rule added to the
table needs nothing here. Parameters are validated by their name where the name has a meaning
across rules (``PARAMETER_TYPES``: stabilizers, ε, γ, α and β are >= 0, bounds are numbers or
nested lists; α − β = 1 and the bounds' order are checked where both are parameters), otherwise
by their annotation (bool, int, float, str).
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import BeforeValidator, Field, StrictInt, TypeAdapter, create_model, model_validator
from pydantic_core import core_schema

from .base import Bool, Float, NonNegativeFloat, NumberOrNested, StrictModel, invalid


class _RuleSpec(StrictModel):
    """Base of the rule specs (one per rule of the engine's table, see ``spec_of``)."""

    def engine_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the engine's rule class."""
        return self.model_dump(exclude={"kind"})


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


# -- rule specs, derived from the engine's rule table ----------------------------------------------

PARAMETER_TYPES: dict[str, Any] = {
    "stabilizer": NonNegativeFloat,
    "epsilon": NonNegativeFloat,
    "gamma": NonNegativeFloat,
    "alpha": NonNegativeFloat,
    "beta": NonNegativeFloat,
    "low": NumberOrNested,
    "high": NumberOrNested,
}
"""Config types of rule parameters by name, in every rule that has them (their meaning is shared,
see ``base.COMMON_FIELD_DOCS``); other parameters are typed from their annotation."""

_ANNOTATION_TYPES: dict[Any, Any] = {bool: Bool, int: StrictInt, float: Float, str: str}


def _engine_rules() -> dict[str, type]:
    from lrp_tasks.engine.rules import RULES  # config -> engine; imported on use (it imports torch)

    return RULES


def _config_type(annotation: Any) -> Any:
    """The config type of a constructor parameter annotated `annotation`: bool, int, float and str
    strictly, a tensor as a number or nested lists, ``X | None`` as optional; ``Any`` otherwise."""
    from torch import Tensor

    if isinstance(annotation, str):  # an annotation the rule's module could not resolve
        annotation = {t.__name__: t for t in _ANNOTATION_TYPES}.get(annotation.strip(), Any)
    if annotation in _ANNOTATION_TYPES:
        return _ANNOTATION_TYPES[annotation]
    if isinstance(annotation, type) and issubclass(annotation, Tensor):
        return NumberOrNested
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is Union:
        members = [m for m in typing.get_args(annotation) if m is not type(None)]
        optional = len(members) < len(typing.get_args(annotation))
        if len(members) == 1:
            inner = _config_type(members[0])
        elif any(isinstance(m, type) and issubclass(m, Tensor) for m in members):
            inner = NumberOrNested
        else:
            return Any
        return inner | None if optional and inner is not Any else inner
    return Any


def _hints(rule: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(rule.__init__)
    except Exception:  # names the rule's module cannot resolve: keep the annotations as written
        return {}


def _description(rule: type) -> str:
    doc = (rule.__doc__ or "").strip().split("\n\n")[0]
    return f"{' '.join(doc.split())} (``{rule.__name__}``)" if doc else f"``{rule.__name__}``"


def _bounds_given(cls: type, data: Any) -> Any:
    return require_bounds(data, cls.model_fields["kind"].annotation.__args__[0])


def _bounds_ordered(spec: Any) -> Any:
    if spec.low is not None and spec.high is not None:
        check_bounds(spec.low, spec.high, spec.kind)
    return spec


def _conserving(spec: Any) -> Any:
    # same tolerance as the engine's AlphaBetaRule, so the config never accepts what it refuses
    if abs((spec.alpha - spec.beta) - 1.0) > 1e-12:
        raise invalid(
            "alpha_beta",
            f"{spec.kind} needs alpha - beta = 1 to conserve relevance, got alpha={spec.alpha}, beta={spec.beta}",
        )
    return spec


_SPECS: dict[tuple[str, type], type[_RuleSpec]] = {}


def spec_of(name: str, rule: type) -> type[_RuleSpec]:
    """The config spec of the engine rule `rule` registered as `name`: ``kind: Literal[name]`` and
    one field per parameter of the class's constructor, with its default (made once per class)."""
    key = (name, rule)
    if key not in _SPECS:
        from lrp_tasks.engine.rules import constructor_signature

        hints = _hints(rule)
        fields: dict[str, Any] = {"kind": (Literal[name], ...)}
        for p in constructor_signature(rule).parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            annotation = PARAMETER_TYPES.get(p.name) or _config_type(hints.get(p.name, p.annotation))
            fields[p.name] = (annotation, ... if p.default is p.empty else p.default)
        validators: dict[str, Any] = {}
        if {"low", "high"} <= fields.keys():
            if fields["low"][1] is ... and fields["high"][1] is ...:
                validators["_has_bounds"] = model_validator(mode="before")(_bounds_given)
            validators["_ordered"] = model_validator(mode="after")(_bounds_ordered)
        if {"alpha", "beta"} <= fields.keys():
            validators["_conserving"] = model_validator(mode="after")(_conserving)
        _SPECS[key] = create_model(  # type: ignore[call-overload]
            f"{name}Spec",
            __base__=_RuleSpec,
            __module__=__name__,
            __doc__=_description(rule),
            __validators__=validators,
            **fields,
        )
    return _SPECS[key]


class _RuleSpecs(Mapping[str, type[_RuleSpec]]):
    """Rule name → config spec, for the rules of the engine's table as it is when read."""

    def __getitem__(self, name: str) -> type[_RuleSpec]:
        return spec_of(name, _engine_rules()[name])

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in _engine_rules()

    def __iter__(self) -> Iterator[str]:
        return iter(list(_engine_rules()))

    def __len__(self) -> int:
        return len(_engine_rules())

    def __repr__(self) -> str:
        return f"RULE_SPECS({dict(self)!r})"


RULE_SPECS: Mapping[str, type[_RuleSpec]] = _RuleSpecs()
"""Rule name → spec class (``RULE_SPECS["Epsilon"]`` is ``EpsilonSpec``), from the engine's table."""


def __getattr__(name: str) -> Any:
    """``EpsilonSpec``, ``ZBoxSpec``...: the spec of each rule of the table (so specs pickle)."""
    if name.endswith("Spec") and name[: -len("Spec")] in RULE_SPECS:
        return RULE_SPECS[name[: -len("Spec")]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_ADAPTERS: dict[tuple[tuple[str, type], ...], TypeAdapter[Any]] = {}


def _adapter() -> TypeAdapter[Any]:
    """A validator of the union of every rule spec, discriminated by ``kind``."""
    table = tuple(_engine_rules().items())
    if table not in _ADAPTERS:
        specs = tuple(spec_of(name, rule) for name, rule in table)
        union: Any = Annotated[Union[specs], Field(discriminator="kind")] if len(specs) > 1 else specs[0]  # noqa: UP007
        _ADAPTERS.clear()  # the table changed (a rule was registered): the old union is stale
        _ADAPTERS[table] = TypeAdapter(union)
    return _ADAPTERS[table]


class AnyRuleSpec:
    """The spec of any rule of the engine's table, which is read when a rule is validated (so a
    rule registered at run time is accepted): a union of ``RULE_SPECS`` discriminated by ``kind``.
    Its JSON schema is that union's, for the rules in the table when the schema is made."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(lambda value: _adapter().validate_python(value))

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: core_schema.CoreSchema, handler: Any) -> Any:
        return handler(_adapter().core_schema)

    @staticmethod
    def tagged_union() -> Any:
        """The union it stands for now (``config.errors`` reads field paths through it)."""
        return Union[tuple(RULE_SPECS.values())]  # noqa: UP007


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
    AnyRuleSpec,
    # the form accepts both shorthands: a rule's name, and {Name: {params}}
    BeforeValidator(normalise_rule, json_schema_input_type=str | dict[str, dict[str, Any]] | AnyRuleSpec),
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

FUNCTION_FAMILIES = (
    "Add", "Cat", "Reshape", "Scale", "Route", "Activation", "MaxPooling", "AvgPooling", "MatMul", "Softmax",
    "Mul", "LayerNormFunction",
)
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


LayerTypes = Annotated[list[str], BeforeValidator(_check_layer_types, json_schema_input_type=str | list[str])]
"""One or more ``torch.nn`` class names (``Conv2d``) or groups (``Convolution``); a single name
may be written without the list."""
