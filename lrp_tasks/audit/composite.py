"""Turn the ``composite`` section of a config into the LRP engine's objects.

The schema (what may be written, and its validation) is ``lrp_tasks.config.composite``; this
module only maps a validated spec onto ``lrp_tasks.engine`` (imported on use, so configs can be
validated without the engine). Every rule spec maps to the engine class ``RULES[kind]`` (the
engine's one name → class table) with the spec's fields as keyword arguments, every preset to the
engine function of the same name, every rules entry to one composite primitive:

=====================  =========================  ================================
selector               without ``type``            with ``type``
=====================  =========================  ================================
(none)                 GlobalMap(rule)             GlobalTypeMap({T: rule})
name                   NameMap({name: rule})       (refused)
index                  LayerMap(i, rule)           (refused)
range [a, b]           RangeMap(range(a, b), r)    RangeTypeMap(range(a, b), {T: r})
first                  FirstLayerMap(rule)         FirstLayerTypeMap({T: rule})
last                   LastLayerMap(rule)          LastLayerTypeMap({T: rule})
first_n                (refused)                   FirstNTypeMap(n, {T: rule})
first_match            (refused)                   FirstMatchTypeMap({T: rule})
=====================  =========================  ================================

Every entry must select at least one step of the model: one that selects none (a misspelt name,
an index past the last layer, a type the model does not have) is an error when the analyzer is
built, naming the entry (``composite.rules[2] (name: nonexistent.*)``).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import torch
from pydantic import TypeAdapter

from lrp_tasks.config.composite import CompositeSpec, RuleEntry, RulesCompositeSpec, _Preset
from lrp_tasks.config.rules import RuleSpec, _RuleSpec, resolve_layer_type

_COMPOSITE = TypeAdapter(CompositeSpec)


def _engine() -> ModuleType:
    return importlib.import_module("lrp_tasks.engine")


def _bound(value: Any) -> Any:
    """Nested-list bounds become tensors (broadcastable to the input); numbers stay numbers."""
    return torch.as_tensor(value, dtype=torch.float64) if isinstance(value, list) else value


def build_rule(spec: _RuleSpec) -> Any:
    """The engine rule of a rule spec: ``{kind: Epsilon, epsilon: 0.01}`` → ``EpsilonRule(epsilon=0.01)``."""
    kwargs = spec.engine_kwargs()
    for key in ("low", "high"):
        if key in kwargs:
            kwargs[key] = _bound(kwargs[key])
    return _engine().RULES[spec.kind](**kwargs)


def layer_type_key(names: list[str]) -> type | tuple[type, ...]:
    """The type key of an engine type map: one ``torch.nn`` class, or a tuple of them."""
    classes: list[type] = []
    for name in names:
        classes += [c for c in resolve_layer_type(name) if c not in classes]
    return classes[0] if len(classes) == 1 else tuple(classes)


def build_primitive(entry: RuleEntry) -> Any:
    """The engine primitive of one rules entry (see the table in the module docstring)."""
    engine, rule = _engine(), build_rule(entry.rule)
    types = layer_type_key(entry.type) if entry.type else None
    selector = entry.selector
    if selector == "name":
        return engine.NameMap(dict.fromkeys(entry.name or [], rule))
    if selector == "index":
        return engine.LayerMap(entry.index, rule)
    if types is None:
        if selector == "all":
            return engine.GlobalMap(rule)
        if selector == "range":
            return engine.RangeMap(range(*entry.range), rule)  # type: ignore[misc]
        if selector == "first":
            return engine.FirstLayerMap(rule)
        if selector == "last":
            return engine.LastLayerMap(rule)
    else:
        type_map = {types: rule}
        if selector == "all":
            return engine.GlobalTypeMap(type_map)
        if selector == "range":
            return engine.RangeTypeMap(range(*entry.range), type_map)  # type: ignore[misc]
        if selector == "first":
            return engine.FirstLayerTypeMap(type_map)
        if selector == "last":
            return engine.LastLayerTypeMap(type_map)
        if selector == "first_n":
            return engine.FirstNTypeMap(entry.first_n, type_map)
        if selector == "first_match":
            return engine.FirstMatchTypeMap(type_map)
    raise ValueError(f"rules entry with selector {selector!r} and type {entry.type} has no engine primitive")


def _selector_text(entry: RuleEntry) -> str:
    """The entry's selector as the config writes it: ``name: features.*``, ``index: 99``..."""
    parts = []
    for key in ("type", "name", "index", "range", "first", "last", "first_n", "first_match"):
        value = getattr(entry, key)
        if value is not None:
            if isinstance(value, list | tuple) and len(value) == 1:
                value = value[0]
            parts.append(f"{key}: {value}")
    return ", ".join(parts) or "every layer"


def build_composite(spec: Any) -> Any:
    """The engine ``Composite`` of a composite spec (a validated spec, or raw config data such as
    ``"EpsilonPlusFlat"`` or ``{"rules": [...]}``, which is validated first)."""
    if not isinstance(spec, _Preset | RulesCompositeSpec):
        spec = _COMPOSITE.validate_python(spec)
    engine = _engine()
    if isinstance(spec, _Preset):
        kwargs = spec.engine_kwargs()
        for key in ("low", "high"):
            if key in kwargs:
                kwargs[key] = _bound(kwargs[key])
        return getattr(engine, spec.preset)(**kwargs)
    primitives = []
    for i, entry in enumerate(spec.rules):
        primitive = build_primitive(entry)
        primitive.required = True
        primitive.label = f"composite.rules[{i}] ({_selector_text(entry)})"
        primitives.append(primitive)
    default = build_rule(spec.default) if spec.default is not None else None
    return engine.Composite(*primitives, default=default)


__all__ = ["CompositeSpec", "RuleSpec", "build_composite", "build_primitive", "build_rule", "layer_type_key"]
