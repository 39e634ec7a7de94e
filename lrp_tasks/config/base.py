"""Shared building blocks of the configuration schema.

Every model forbids unknown keys (a typo must be an error, not a silently ignored setting) and is
frozen (a config is a value: hashable, digestible, safe to pass to many workers). Numbers are
strict so that YAML's ``true`` is not taken for ``1``; ints are still accepted where floats are.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

# What the parameters shared by many rule and preset specs mean: one wording for each, used as the
# JSON-schema description (the Prefect UI form's help text) wherever a field has none of its own.
COMMON_FIELD_DOCS = {
    "kind": "which variant of this section this is",
    "preset": "name of the composite preset",
    "epsilon": "ε added to the denominators of LRP-ε layers (absorbs weak, contradictory relevance); >= 0",
    "gamma": "γ: weight of the positive contributions added by LRP-γ; >= 0 (0 is LRP-0)",
    "stabilizer": "small number added to denominators (sign-preserving) so they are never zero; >= 0",
    "zero_bias": "ignore the layer's bias when redistributing relevance",
    "alpha": "α: weight of the positive contributions (LRP-αβ); α − β must be 1",
    "beta": "β: weight of the negative contributions (LRP-αβ); α − β must be 1",
    "low": "smallest value each input can take (a number, or nested lists per channel, e.g. shape C×1×1)",
    "high": "largest value each input can take (a number, or nested lists per channel, e.g. shape C×1×1)",
    "convention": "rpj: RelevancePropagation.jl's conventions; zennit: reproduce zennit 1.0's numbers",
    "gate": "operand position (0 or 1) of the gate a GateRule holds constant (none: the one computed by a sigmoid)",
    "softmax_constant": "CP-LRP: operands computed from a softmax (attention probabilities) get no relevance",
}


def _describe_common_fields(schema: dict[str, Any], model: type) -> None:
    for name, prop in schema.get("properties", {}).items():
        if "description" not in prop and name in COMMON_FIELD_DOCS:
            prop["description"] = COMMON_FIELD_DOCS[name]


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, instances are immutable.

    A field's docstring (the string literal under it) is its description in the JSON schema, which
    the Prefect UI shows beside each field of the flow's ``config`` form."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        use_attribute_docstrings=True,
        json_schema_extra=_describe_common_fields,
    )


def invalid(kind: str, message: str, field: str | None = None) -> PydanticCustomError:
    """A validation error with a final, already formatted message (pydantic would otherwise treat
    braces as placeholders); `field` names the field a cross-field check is about."""
    return PydanticCustomError(kind, message, {"field": field} if field else None)


PositiveInt = Annotated[int, Field(strict=True, gt=0)]
NonNegativeInt = Annotated[int, Field(strict=True, ge=0)]
Float = Annotated[float, Field(strict=True)]
NonNegativeFloat = Annotated[float, Field(strict=True, ge=0)]
PositiveFloat = Annotated[float, Field(strict=True, gt=0)]
Bool = Annotated[bool, Field(strict=True)]
NonEmptyStr = Annotated[str, Field(min_length=1)]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _nested_floats(value: Any) -> Any:
    """A number or a rectangular nested list of numbers, as floats (bounds of ZBox)."""
    if _is_number(value) and math.isfinite(value):
        return float(value)
    if isinstance(value, list | tuple) and value:
        items = [_nested_floats(v) for v in value]
        shapes = {_shape(item) for item in items}
        if len(shapes) != 1:
            raise invalid("ragged_bound", "nested lists must be rectangular (all rows of one length)")
        return items
    raise invalid("bound_type", f"expected a finite number or a (nested) list of them, got {value!r}")


def _shape(value: Any) -> tuple[int, ...]:
    return () if isinstance(value, float) else (len(value), *_shape(value[0]))


NumberOrNested = Annotated[
    Any,
    BeforeValidator(_nested_floats),
    WithJsonSchema(
        {
            "anyOf": [{"type": "number"}, {"type": "array", "items": {}}],
            "description": "a number, or nested lists of numbers broadcastable to the input",
        }
    ),
]
"""A float or a rectangular nested list of floats, e.g. per-channel bounds ``[[[-1.0]], [[-2.0]]]``."""


def _size(value: Any) -> tuple[int, int] | int:
    if isinstance(value, bool):
        raise invalid("size_type", f"expected an int or [height, width], got {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise invalid("size_value", f"size must be positive, got {value}")
        return value
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        return (value[0], value[1])
    raise invalid("size_type", f"expected a positive int or [height, width] of positive ints, got {value!r}")


Size = Annotated[
    Any,
    BeforeValidator(_size),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "exclusiveMinimum": 0},
                {
                    "type": "array",
                    "items": {"type": "integer", "exclusiveMinimum": 0},
                    "minItems": 2,
                    "maxItems": 2,
                },
            ]
        }
    ),
]
"""A positive int or a ``[height, width]`` pair."""
