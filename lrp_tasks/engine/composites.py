"""Composites: which rule each layer gets.

A composite is an ordered list of primitives (as in RelevancePropagation.jl); each primitive
claims some layers, and the LAST primitive that claims a layer wins. Unclaimed layers get the
composite's default rule (ZeroRule). Indices are 0-based positions in the flattened model
(negative indices count from the end); names are the module names of the user's model
(``features.0``), matched exactly or as shell-style patterns (``features.*``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase

from torch import nn

from .layers import is_instance
from .rules import LRPRule, ZeroRule

NamedLayers = Sequence[tuple[str, nn.Module]]
TypeKey = type | tuple[type, ...]


def _type_name(key: TypeKey) -> str:
    if isinstance(key, tuple):
        return "(" + ", ".join(_type_name(k) for k in key) + ")"
    return getattr(key, "__name__", repr(key))


def _match_type(layer: nn.Module, type_map: Mapping[TypeKey, LRPRule]) -> LRPRule | None:
    """First entry of the map whose type(s) the layer is an instance of."""
    for key, rule in type_map.items():
        if is_instance(layer, key):
            return rule
    return None


def _indices(n: int, selection: int | range | slice) -> list[int]:
    if isinstance(selection, int):
        i = selection if selection >= 0 else n + selection
        return [i] if 0 <= i < n else []
    if isinstance(selection, slice):
        return list(range(n))[selection]
    return [i for i in selection if 0 <= i < n]


class Primitive:
    """One entry of a composite: returns the rules it assigns, by layer position."""

    def assign(self, layers: NamedLayers) -> dict[int, LRPRule]:
        raise NotImplementedError

    def _lines(self) -> list[str]:
        return []

    def __repr__(self) -> str:
        lines = self._lines()
        if not lines:
            return f"{type(self).__name__}()"
        body = "".join(f"  {line},\n" for line in lines)
        return f"{type(self).__name__}(\n{body})"


class GlobalMap(Primitive):
    """One rule for every layer."""

    def __init__(self, rule: LRPRule) -> None:
        self.rule = rule

    def assign(self, layers: NamedLayers) -> dict[int, LRPRule]:
        return dict.fromkeys(range(len(layers)), self.rule)

    def __repr__(self) -> str:
        return f"GlobalMap({self.rule!r})"


class LayerMap(Primitive):
    """A rule for the layer at one position."""

    def __init__(self, index: int, rule: LRPRule) -> None:
        self.index, self.rule = index, rule

    def assign(self, layers: NamedLayers) -> dict[int, LRPRule]:
        return dict.fromkeys(_indices(len(layers), self.index), self.rule)

    def __repr__(self) -> str:
        return f"LayerMap({self.index}, {self.rule!r})"


class RangeMap(Primitive):
    """A rule for the layers at positions in a range (``range(2, 5)``)."""

    def __init__(self, positions: range | slice, rule: LRPRule) -> None:
        self.positions, self.rule = positions, rule

    def assign(self, layers: NamedLayers) -> dict[int, LRPRule]:
        return dict.fromkeys(_indices(len(layers), self.positions), self.rule)

    def __repr__(self) -> str:
        return f"RangeMap({self.positions!r}, {self.rule!r})"


class FirstLayerMap(LayerMap):
    """A rule for the first layer."""

    def __init__(self, rule: LRPRule) -> None:
        super().__init__(0, rule)

    def __repr__(self) -> str:
        return f"FirstLayerMap({self.rule!r})"


class LastLayerMap(LayerMap):
    """A rule for the last layer."""

    def __init__(self, rule: LRPRule) -> None:
        super().__init__(-1, rule)

    def __repr__(self) -> str:
        return f"LastLayerMap({self.rule!r})"


class _TypeMapBase(Primitive):
    def __init__(self, type_map: Mapping[TypeKey, LRPRule]) -> None:
        self.type_map = dict(type_map)

    def _candidates(self, layers: NamedLayers) -> list[int]:
        return list(range(len(layers)))

    def assign(self, layers: NamedLayers) -> dict[int, LRPRule]:
        out: dict[int, LRPRule] = {}
        for i in self._candidates(layers):
            rule = _match_type(layers[i][1], self.type_map)
            if rule is not None:
                out[i] = rule
        return out

    def _lines(self) -> list[str]:
        return [f"{_type_name(k)} => {r!r}" for k, r in self.type_map.items()]


class GlobalTypeMap(_TypeMapBase):
    """Rules by layer type, for every layer."""


class RangeTypeMap(_TypeMapBase):
    """Rules by layer type, for layers at positions in a range."""

    def __init__(self, positions: range | slice, type_map: Mapping[TypeKey, LRPRule]) -> None:
        super().__init__(type_map)
        self.positions = positions

    def _candidates(self, layers: NamedLayers) -> list[int]:
        return _indices(len(layers), self.positions)

    def __repr__(self) -> str:
        return super().__repr__().replace("RangeTypeMap(\n", f"RangeTypeMap({self.positions!r},\n", 1)


class FirstLayerTypeMap(_TypeMapBase):
    """Rules by layer type, for the first layer only (applies only if its type matches)."""

    def _candidates(self, layers: NamedLayers) -> list[int]:
        return _indices(len(layers), 0)


class LastLayerTypeMap(_TypeMapBase):
    """Rules by layer type, for the last layer only."""

    def _candidates(self, layers: NamedLayers) -> list[int]:
        return _indices(len(layers), -1)


class FirstNTypeMap(_TypeMapBase):
    """Rules by layer type, for the first n layers."""

    def __init__(self, n: int, type_map: Mapping[TypeKey, LRPRule]) -> None:
        super().__init__(type_map)
        self.n = n

    def _candidates(self, layers: NamedLayers) -> list[int]:
        return list(range(min(self.n, len(layers))))

    def __repr__(self) -> str:
        return super().__repr__().replace("FirstNTypeMap(\n", f"FirstNTypeMap({self.n},\n", 1)


class FirstMatchTypeMap(_TypeMapBase):
    """Rules by layer type for the first layer that matches any of the types (zennit's
    ``SpecialFirstLayerMapComposite``: the first Linear-or-Conv, wherever it sits)."""

    def assign(self, layers: NamedLayers) -> dict[int, LRPRule]:
        for i, (_, layer) in enumerate(layers):
            rule = _match_type(layer, self.type_map)
            if rule is not None:
                return {i: rule}
        return {}


class NameMap(Primitive):
    """Rules by module name (``features.0``) or shell-style pattern (``classifier.*``)."""

    def __init__(self, name_map: Mapping[str, LRPRule]) -> None:
        self.name_map = dict(name_map)

    def assign(self, layers: NamedLayers) -> dict[int, LRPRule]:
        out: dict[int, LRPRule] = {}
        for i, (name, _) in enumerate(layers):
            for pattern, rule in self.name_map.items():
                if name == pattern or fnmatchcase(name, pattern):
                    out[i] = rule
                    break
        return out

    def _lines(self) -> list[str]:
        return [f"{k!r} => {r!r}" for k, r in self.name_map.items()]


class Composite:
    """Ordered primitives; the last primitive that matches a layer decides its rule."""

    def __init__(self, *primitives: Primitive, default: LRPRule | None = None, name: str | None = None) -> None:
        for p in primitives:
            if not isinstance(p, Primitive):
                raise TypeError(f"Composite takes primitives (GlobalTypeMap, LayerMap, ...), got {p!r}")
        self.primitives = list(primitives)
        self.default = default if default is not None else ZeroRule()
        self.name = name

    def assign(self, layers: NamedLayers) -> list[LRPRule]:
        rules: list[LRPRule] = [self.default] * len(layers)
        for primitive in self.primitives:
            for i, rule in primitive.assign(layers).items():
                rules[i] = rule
        return rules

    def __repr__(self) -> str:
        body = "".join("  " + repr(p).replace("\n", "\n  ") + ",\n" for p in self.primitives)
        title = f"Composite[{self.name}]" if self.name else "Composite"
        return f"{title}(\n{body})"
