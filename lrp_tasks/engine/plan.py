"""One representation for every model: an ordered list of steps.

A step is a layer (a leaf module) or a functional operation (a :class:`~.functional.FunctionStep`),
with the steps whose outputs it consumes. ``nn.Sequential`` models lower to a chain; any other
model is traced with torch.fx (``tracing.py``) into the same form. Steps are in execution order,
so the forward pass walks the list and the relevance pass walks it backwards; the first step is
the model input. Sign facts (which values are non-negative by construction) let rules skip work."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch.nn.functional as F
from torch import nn

from .functional import (
    NEGATING_FUNCTIONS,
    NONNEGATIVE_FUNCTIONS,
    Activation,
    Add,
    AvgPooling,
    Cat,
    FunctionStep,
    MaxPooling,
    Reshape,
    Route,
)
from .layers import NONNEGATIVE_OUTPUT_TYPES, SIGN_PRESERVING_TYPES

INPUT, LAYER, FUNCTION, CONSTANT = "input", "layer", "function", "constant"
SIGN_PRESERVING_FAMILIES = (Add, Cat, Reshape, Route, MaxPooling, AvgPooling, Activation)


@dataclass
class Step:
    """One operation of a model.

    name: unique, as printed by ``print(analyzer)`` and matched by ``NameMap`` (a layer used twice
    gets ``name@1`` for its second use; ``module_name`` is then the module's name for both).
    inputs: indices of the steps whose values this step consumes, in argument order."""

    name: str
    kind: str
    module: nn.Module | None = None
    inputs: list[int] = field(default_factory=list)
    module_name: str = ""
    scope: str = ""
    """The module path the operation sits in (``layer1.0`` for a block's addition)."""
    value: Any = None
    """For constants: the owning module and attribute path, fetched at run time."""
    input_nonnegative: bool = False
    output_nonnegative: bool = False
    from_input: bool = False
    """Whether the value depends on the model input (False for parameters, constants and what is
    computed from them alone, such as an expanded class token): such values absorb relevance."""

    @property
    def is_layer(self) -> bool:
        return self.kind == LAYER

    @property
    def carries_relevance(self) -> bool:
        if self.kind == FUNCTION:
            return isinstance(self.module, FunctionStep) and self.module.carries_relevance
        return self.kind in (LAYER, INPUT)


@dataclass
class Plan:
    """Steps in execution order (``steps[0]`` is the model input) and the step giving the output."""

    steps: list[Step]
    output: int
    kind: str
    """``sequential`` or ``graph``: how the plan was built (the analysis is the same)."""

    def __post_init__(self) -> None:
        self.consumers: list[list[int]] = [[] for _ in self.steps]
        for i, step in enumerate(self.steps):
            for j in step.inputs:
                if i not in self.consumers[j]:
                    self.consumers[j].append(i)
        self._signs()
        self._constants()

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def layers(self) -> list[Step]:
        return [s for s in self.steps if s.is_layer]

    def index_of(self, name: str) -> int:
        for i, step in enumerate(self.steps):
            if step.name == name:
                return i
        raise KeyError(name)

    def output_of(self, name: str) -> int | None:
        """The step whose value is the output of step or container `name` (``layer2``): the step
        itself, or the last step inside the container; None when nothing matches."""
        for i, step in enumerate(self.steps):
            if step.name == name:
                return i
        prefix = name + "."
        inside = [
            i
            for i, s in enumerate(self.steps)
            if s.kind in (LAYER, FUNCTION) and (s.module_name.startswith(prefix) or (s.scope + ".").startswith(prefix))
        ]
        return inside[-1] if inside else None

    def _constants(self) -> None:
        """Which values depend on the model input; additions and concatenations learn which of their
        operands are parameters or constants (a position embedding, a class token)."""
        for step in self.steps:
            step.from_input = step.kind == INPUT or (
                step.kind in (LAYER, FUNCTION)
                and step.carries_relevance
                and any(self.steps[j].from_input for j in step.inputs)
            )  # sizes (x.shape[0]) depend on the input but carry no relevance
            if step.kind == FUNCTION and isinstance(step.module, (Add, Cat)):
                step.module.constant_inputs = frozenset(
                    k for k, j in enumerate(step.inputs)
                    if not self.steps[j].from_input
                )

    def _signs(self) -> None:
        """Which step outputs are non-negative by construction (ReLU, pooling of ReLU outputs...)."""
        nonneg: list[bool] = []
        for step in self.steps:
            inputs = [nonneg[j] for j in step.inputs if self.steps[j].carries_relevance]
            step.input_nonnegative = bool(inputs) and all(inputs)
            if step.kind == LAYER:
                if isinstance(step.module, NONNEGATIVE_OUTPUT_TYPES):
                    out = True
                else:
                    out = isinstance(step.module, SIGN_PRESERVING_TYPES) and step.input_nonnegative
            elif step.kind == FUNCTION and isinstance(step.module, FunctionStep):
                fn = step.module
                if isinstance(fn, Activation) and fn.target in NONNEGATIVE_FUNCTIONS:
                    out = True
                else:
                    constants = any(self.steps[j].kind == CONSTANT for j in step.inputs) or any(
                        isinstance(a, (int, float)) and a < 0 for a in fn.args
                    )  # x + (-1.0) can turn negative
                    out = (
                        step.input_nonnegative
                        and not constants
                        and isinstance(fn, SIGN_PRESERVING_FAMILIES)
                        and fn.target not in NEGATING_FUNCTIONS
                        and fn.target is not F.leaky_relu
                    )
            else:
                out = False
            step.output_nonnegative = bool(out)
            nonneg.append(step.output_nonnegative)


def sequential_plan(named_layers: list[tuple[str, nn.Module]]) -> Plan:
    """A chain: input → layer 0 → layer 1 → ... (the layers of a flattened ``nn.Sequential``)."""
    steps = [Step("input", INPUT)]
    seen: dict[str, int] = {}
    for name, layer in named_layers:
        uses = seen.get(name, 0)
        seen[name] = uses + 1
        steps.append(Step(name if not uses else f"{name}@{uses}", LAYER, layer, [len(steps) - 1], module_name=name))
    return Plan(steps, len(steps) - 1, "sequential")
