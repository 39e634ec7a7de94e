"""Composites: which rule each step of a model gets.

A composite is an ordered list of primitives (as in RelevancePropagation.jl); each primitive
claims some steps, and the LAST primitive that claims a step wins. Positional primitives
(``GlobalMap``, ``LayerMap``, ``RangeMap``, first/last...) count layers only: 0-based positions
of the model's layers (negative indices count from the end). Type maps and ``NameMap`` address
every step, layers and functional operations alike: by type (``nn.Conv2d``, or a family of
functional operations such as ``Add``) or by name as ``print(analyzer)`` shows it (``features.0``,
``add_1``), matched exactly or as shell-style patterns (``features.*``).

Unclaimed steps get the composite's ``default`` rule when one is given (for a functional
operation, when the rule applies to it); otherwise their own default: ``ZeroRule`` with the
composite's ``stabilizer`` for layers, additions and average poolings, the gradient for
concatenations, indexing and max pooling, ``PassRule`` for reshapes, ReLU-like functions and the
element-wise activations GELU, SiLU, Mish and Hardswish (modules and functions).

A selector that claims nothing (a name that matches no step, an index out of range) is an error
when the analyzer is built: it names the selector."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase

from torch import nn

from .layers import ELEMENTWISE_ACTIVATION_TYPES, is_instance
from .plan import LAYER, Step
from .rules import LRPRule, PassRule, ZeroRule

Targets = Sequence[Step]
TypeKey = type | tuple[type, ...]


class UnmatchedSelectorError(ValueError):
    """A composite primitive selects layers by name or position, and none exists."""


def _as_steps(layers: Sequence[Step] | Sequence[tuple[str, nn.Module]]) -> list[Step]:
    """Steps, also from (name, module) pairs (the layers of a sequential model)."""
    return [t if isinstance(t, Step) else Step(t[0], LAYER, t[1], module_name=t[0]) for t in layers]


def _layer_positions(targets: Targets) -> list[int]:
    return [k for k, t in enumerate(targets) if t.is_layer]


def _names(targets: Targets) -> str:
    names = [t.name for t in targets]
    shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
    return shown


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
    """One entry of a composite: returns the rules it assigns, by position in the steps it is given.

    ``label`` names the primitive in errors (the config layer sets it to the config entry);
    ``required`` makes a primitive that claims nothing an error (name and index selectors)."""

    label: str | None = None
    required: bool = False

    def assign(self, layers: Targets) -> dict[int, LRPRule]:
        raise NotImplementedError

    def claim(self, targets: Targets) -> dict[int, LRPRule]:
        """``assign``, refusing a required selector that claims nothing."""
        claimed = self.assign(targets)
        if not claimed and self.required:
            raise UnmatchedSelectorError(
                f"composite selector {self.label or repr(self)} matches no layer of the model "
                f"(its steps: {_names(targets)})"
            )
        return claimed

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

    def assign(self, layers: Targets) -> dict[int, LRPRule]:
        return dict.fromkeys(_layer_positions(layers), self.rule)

    def __repr__(self) -> str:
        return f"GlobalMap({self.rule!r})"


class LayerMap(Primitive):
    """A rule for the layer at one position."""

    required = True

    def __init__(self, index: int, rule: LRPRule) -> None:
        self.index, self.rule = index, rule

    def assign(self, layers: Targets) -> dict[int, LRPRule]:
        positions = _layer_positions(layers)
        return dict.fromkeys((positions[i] for i in _indices(len(positions), self.index)), self.rule)

    def __repr__(self) -> str:
        return f"LayerMap({self.index}, {self.rule!r})"


class RangeMap(Primitive):
    """A rule for the layers at positions in a range (``range(2, 5)``)."""

    required = True

    def __init__(self, positions: range | slice, rule: LRPRule) -> None:
        self.positions, self.rule = positions, rule

    def assign(self, layers: Targets) -> dict[int, LRPRule]:
        positions = _layer_positions(layers)
        return dict.fromkeys((positions[i] for i in _indices(len(positions), self.positions)), self.rule)

    def __repr__(self) -> str:
        return f"RangeMap({self.positions!r}, {self.rule!r})"


class FirstLayerMap(LayerMap):
    """A rule for the first layer."""

    required = False

    def __init__(self, rule: LRPRule) -> None:
        super().__init__(0, rule)

    def __repr__(self) -> str:
        return f"FirstLayerMap({self.rule!r})"


class LastLayerMap(LayerMap):
    """A rule for the last layer."""

    required = False

    def __init__(self, rule: LRPRule) -> None:
        super().__init__(-1, rule)

    def __repr__(self) -> str:
        return f"LastLayerMap({self.rule!r})"


class _TypeMapBase(Primitive):
    def __init__(self, type_map: Mapping[TypeKey, LRPRule]) -> None:
        self.type_map = dict(type_map)

    def _candidates(self, layers: Targets) -> list[int]:
        return _layer_positions(layers)

    def assign(self, layers: Targets) -> dict[int, LRPRule]:
        out: dict[int, LRPRule] = {}
        for i in self._candidates(layers):
            rule = _match_type(layers[i].module, self.type_map)
            if rule is not None:
                out[i] = rule
        return out

    def _lines(self) -> list[str]:
        return [f"{_type_name(k)} => {r!r}" for k, r in self.type_map.items()]


class GlobalTypeMap(_TypeMapBase):
    """Rules by type, for every step: layer types and functional families (``Add``, ``Cat``...)."""

    def _candidates(self, layers: Targets) -> list[int]:
        return list(range(len(layers)))


class RangeTypeMap(_TypeMapBase):
    """Rules by layer type, for layers at positions in a range."""

    def __init__(self, positions: range | slice, type_map: Mapping[TypeKey, LRPRule]) -> None:
        super().__init__(type_map)
        self.positions = positions

    def _candidates(self, layers: Targets) -> list[int]:
        positions = _layer_positions(layers)
        return [positions[i] for i in _indices(len(positions), self.positions)]

    def __repr__(self) -> str:
        return super().__repr__().replace("RangeTypeMap(\n", f"RangeTypeMap({self.positions!r},\n", 1)


class FirstLayerTypeMap(_TypeMapBase):
    """Rules by layer type, for the first layer only (applies only if its type matches)."""

    def _candidates(self, layers: Targets) -> list[int]:
        return _layer_positions(layers)[:1]


class LastLayerTypeMap(_TypeMapBase):
    """Rules by layer type, for the last layer only."""

    def _candidates(self, layers: Targets) -> list[int]:
        return _layer_positions(layers)[-1:]


class FirstNTypeMap(_TypeMapBase):
    """Rules by layer type, for the first n layers."""

    def __init__(self, n: int, type_map: Mapping[TypeKey, LRPRule]) -> None:
        super().__init__(type_map)
        self.n = n

    def _candidates(self, layers: Targets) -> list[int]:
        return _layer_positions(layers)[: self.n]

    def __repr__(self) -> str:
        return super().__repr__().replace("FirstNTypeMap(\n", f"FirstNTypeMap({self.n},\n", 1)


class FirstMatchTypeMap(_TypeMapBase):
    """Rules by layer type for the first layer that matches any of the types (zennit's
    ``SpecialFirstLayerMapComposite``: the first Linear-or-Conv, wherever it sits)."""

    def assign(self, layers: Targets) -> dict[int, LRPRule]:
        for i in _layer_positions(layers):
            rule = _match_type(layers[i].module, self.type_map)
            if rule is not None:
                return {i: rule}
        return {}


class NameMap(Primitive):
    """Rules by step name as ``print(analyzer)`` shows it: module names (``features.0``; a module
    used twice is matched at both uses), functional operations (``add_1``), or shell-style patterns
    (``classifier.*``). Every name must match at least one step."""

    required = True

    def __init__(self, name_map: Mapping[str, LRPRule]) -> None:
        self.name_map = dict(name_map)

    def assign(self, layers: Targets) -> dict[int, LRPRule]:
        out: dict[int, LRPRule] = {}
        for i, step in enumerate(layers):
            names = {step.name, step.module_name} - {""}
            for pattern, rule in self.name_map.items():
                if any(name == pattern or fnmatchcase(name, pattern) for name in names):
                    out[i] = rule
                    break
        return out

    def claim(self, targets: Targets) -> dict[int, LRPRule]:
        claimed = self.assign(targets)
        if self.required:
            for pattern in self.name_map:
                if not any(
                    name == pattern or fnmatchcase(name, pattern)
                    for step in targets
                    for name in ({step.name, step.module_name} - {""})
                ):
                    what = self.label or f"NameMap name {pattern!r}"
                    raise UnmatchedSelectorError(
                        f"composite selector {what} matches no layer of the model (its steps: {_names(targets)})"
                    )
        return claimed

    def _lines(self) -> list[str]:
        return [f"{k!r} => {r!r}" for k, r in self.name_map.items()]


class Composite:
    """Ordered primitives; the last primitive that matches a step decides its rule.

    default: the rule of unclaimed steps (None: each step's own default, see the module doc);
    stabilizer: the stabilizer of those defaults (zennit's presets use 1e-6)."""

    def __init__(
        self,
        *primitives: Primitive,
        default: LRPRule | None = None,
        name: str | None = None,
        stabilizer: float = 1e-9,
    ) -> None:
        for p in primitives:
            if not isinstance(p, Primitive):
                raise TypeError(f"Composite takes primitives (GlobalTypeMap, LayerMap, ...), got {p!r}")
        self.primitives = list(primitives)
        self.default = default
        self.name = name
        self.stabilizer = float(stabilizer)

    def assign(self, layers: Targets | Sequence[tuple[str, nn.Module]]) -> list[LRPRule]:
        """The rule of each step (layers and functional operations)."""
        targets = _as_steps(layers)
        rules: list[LRPRule | None] = [None] * len(targets)
        for primitive in self.primitives:
            for i, rule in primitive.claim(targets).items():
                rules[i] = rule
        return [rule if rule is not None else self.default_for(t) for rule, t in zip(rules, targets, strict=True)]

    def default_for(self, step: Step) -> LRPRule:
        """The rule of a step no primitive claims."""
        own = step.module.default_rule(self.stabilizer) if hasattr(step.module, "default_rule") else None
        if own is None and isinstance(step.module, ELEMENTWISE_ACTIVATION_TYPES):
            own = PassRule()  # GELU, SiLU, ...: the identity rule (AttnLRP, LXT), not LRP-0 of a curve
        if self.default is not None and (own is None or self.default.is_compatible(step.module)):
            return self.default
        return own if own is not None else ZeroRule(stabilizer=self.stabilizer)

    def __repr__(self) -> str:
        body = "".join("  " + repr(p).replace("\n", "\n  ") + ",\n" for p in self.primitives)
        title = f"Composite[{self.name}]" if self.name else "Composite"
        return f"{title}(\n{body})"
