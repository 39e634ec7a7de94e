"""Model checks: LRP is defined for deep rectifier networks, so an analyzer refuses layers and
activations it does not know, with a table that says which and how to fix it.

Custom layers and activations are registered on ``LRP_CONFIG`` (as RelevancePropagation.jl's
``LRP_CONFIG.supports_layer``)::

    LRP_CONFIG.supports_layer(MyDoublingLayer)
    LRP_CONFIG.supports_activation(MyReLU)      # a module class or a function like my_relu
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from .functional import ELEMENTWISE_FUNCTIONS, GATE_FUNCTIONS, FunctionStep, Ignored, Mul, Reshape, Route, Unknown
from .layers import (
    ACTIVATION_TYPES,
    BUILTIN_LAYER_TYPES,
    DROPOUT_TYPES,
    ELEMENTWISE_ACTIVATION_TYPES,
    GATE_TYPES,
    REFUSED_ACTIVATION_TYPES,
    RESHAPE_TYPES,
    SOFTMAX_TYPES,
    has_weight,
    is_instance,
)
from .plan import FUNCTION, LAYER, Plan, Step, sequential_plan
from .rules import GateRule, GeneralizedGammaRule, LRPRule

SUPPORTED = "supported"
UNKNOWN_LAYER = "unknown layer type"
UNSUPPORTED_ACTIVATION = "unsupported activation"


class ModelCheckError(ValueError):
    """The model contains layers or activations LRP cannot explain faithfully."""

    def __init__(self, message: str, report: list[tuple[str, str, str]] | None = None) -> None:
        super().__init__(message)
        self.report = report or []


class SoftmaxOutputError(ModelCheckError):
    """The model still ends in a softmax: explanations must be of logits."""


class LRPConfig:
    """Registry of layer types and activation functions the model checks accept."""

    def __init__(self) -> None:
        self._layers: list[type | Callable[..., Any]] = []
        self._activations: list[type | Callable[..., Any]] = []

    def supports_layer(self, layer: type | Callable[..., Any]) -> None:
        """Accept a custom layer class (or function) in model checks."""
        if layer not in self._layers:
            self._layers.append(layer)

    def supports_activation(self, activation: type | Callable[..., Any]) -> None:
        """Accept a custom activation module class or function in model checks."""
        if activation not in self._activations:
            self._activations.append(activation)

    def unregister(self, item: type | Callable[..., Any]) -> None:
        """Forget a registration (tests and notebooks that experiment)."""
        for registry in (self._layers, self._activations):
            if item in registry:
                registry.remove(item)

    def is_activation(self, obj: object) -> bool:
        """Known or registered ReLU-like activation (module or function)."""
        if any(obj is a or (isinstance(a, type) and isinstance(obj, a)) for a in self._activations):
            return True
        return isinstance(obj, ACTIVATION_TYPES + ELEMENTWISE_ACTIVATION_TYPES) or obj in _FUNCTIONAL_ACTIVATIONS

    def is_layer(self, obj: object) -> bool:
        if any(obj is t or (isinstance(t, type) and isinstance(obj, t)) for t in self._layers):
            return True
        return is_instance(obj, BUILTIN_LAYER_TYPES)


def _softmax_functions() -> tuple[object, ...]:
    import torch
    import torch.nn.functional as F

    return (F.softmax, torch.softmax, F.log_softmax, torch.log_softmax, "softmax", "log_softmax")


def _functional_activations() -> tuple[Callable[..., Any], ...]:
    import torch
    import torch.nn.functional as F

    return (F.relu, F.relu6, torch.relu, F.leaky_relu, *ELEMENTWISE_FUNCTIONS)


_FUNCTIONAL_ACTIVATIONS = _functional_activations()

LRP_CONFIG = LRPConfig()


def layer_status(layer: nn.Module, config: LRPConfig = LRP_CONFIG) -> str:
    """supported | unknown layer type | unsupported activation, for one leaf layer."""
    if isinstance(layer, REFUSED_ACTIVATION_TYPES) and not config.is_activation(layer):
        return f"{UNSUPPORTED_ACTIVATION} {type(layer).__name__}"
    inner = getattr(layer, "activation", None)
    if inner is not None and callable(inner) and not config.is_activation(inner):
        return f"{UNSUPPORTED_ACTIVATION} {getattr(inner, '__name__', type(inner).__name__)}"
    if config.is_activation(layer) or config.is_layer(layer):
        return SUPPORTED
    if type(layer).__module__.startswith("torch.nn.modules.activation"):
        return f"{UNSUPPORTED_ACTIVATION} {type(layer).__name__}"
    return UNKNOWN_LAYER


def _table(rows: Sequence[tuple[str, str, str]]) -> str:
    width = max((len(f"{n}: {d}") for n, d, _ in rows), default=0)
    return "\n".join(f"  {f'{n}: {d}':<{width}}  => {s}" for n, d, s in rows)


_HOW_TO_FIX = """
LRP model check failed
======================
Found unknown layer types or activation functions that are not supported by lrp-audit's LRP
implementation. LRP assumes that the model is a deep rectifier network that only contains
ReLU-like activation functions; other layers would give explanations that look plausible but
are wrong.

If you know a layer is compatible with LRP (e.g. it is linear or element-wise and ReLU-like),
register it and build the analyzer again:

    from lrp_tasks.engine import LRP_CONFIG
    LRP_CONFIG.supports_layer(MyLayer)          # a layer class
    LRP_CONFIG.supports_activation(MyReLU)      # an activation module class or function

To skip all checks at your own risk: LRP(model, composite, skip_checks=True).
Residual or branching models (not nn.Sequential) are analyzed on their torch.fx graph:
LRP(model, composite) traces them automatically; functions are registered the same way
(LRP_CONFIG.supports_layer(my_function))."""




def check_model(layers: Sequence[tuple[str, nn.Module]], config: LRPConfig = LRP_CONFIG) -> None:
    """Raise ModelCheckError with a per-layer table unless every layer is supported (the layers
    of a sequential model; ``LRP`` checks any model through :func:`check_plan`)."""
    check_plan(sequential_plan(list(layers)), None, config)


def is_softmax_step(plan: Plan, i: int) -> bool:
    """Whether step i is a softmax (module, function or method)."""
    step = plan.steps[i]
    if step.kind == LAYER:
        return isinstance(step.module, SOFTMAX_TYPES)
    if step.kind == FUNCTION and isinstance(step.module, FunctionStep):
        return step.module.target in _SOFTMAX_FUNCTIONS
    return False


def check_plan(plan: Plan, rules: Sequence[LRPRule] | None, config: LRPConfig = LRP_CONFIG) -> None:
    """One check and one table for every model: unknown layers and functions, unsupported
    activations, a final softmax, and LeakyReLU without GeneralizedGammaRule on the next weighted
    layer (when `rules` are given)."""
    if is_softmax_step(plan, plan.output):
        step = plan.steps[plan.output]
        raise SoftmaxOutputError(
            f"The model ends in a softmax ({step.name}: {_describe_step(step)}). LRP explains logits: "
            "call strip_softmax(model) first."
        )
    rows: list[tuple[str, str, str]] = []
    for i, step in enumerate(plan.steps):
        if step.kind == LAYER:
            status = layer_status(step.module, config)
        elif step.kind == FUNCTION and not isinstance(step.module, Ignored):
            status = SUPPORTED if not isinstance(step.module, Unknown) else _function_status(step.module)
        else:
            continue
        if status != SUPPORTED and _is_held_gate(plan, i, rules):
            status = SUPPORTED
        if status == SUPPORTED and rules is not None and _is_leaky(step):
            problem = _leaky_relu_problem(plan, rules, i)
            if problem:
                status = problem
        rows.append((step.name, _describe_step(step), status))
    if all(status == SUPPORTED for *_, status in rows):
        return
    unknown = any(s != SUPPORTED and not s.startswith("LeakyReLU") for *_, s in rows)
    header = (
        "Unknown layer or activation function found in model"
        if unknown
        else "LeakyReLU lets negative activations through: the next weighted layer must use GeneralizedGammaRule"
    )
    fix = _HOW_TO_FIX if unknown else _LEAKY_FIX
    raise ModelCheckError(header + "\n" + _table(rows) + fix, rows)


_LEAKY_FIX = """
A LeakyReLU passes negative values, which z⁺-type rules (ZPlus, AlphaBeta, Gamma) ignore: the
explanation would lose what they carry. Assign GeneralizedGammaRule (zennit's Gamma) to the weighted
layer(s) named above, e.g. GlobalTypeMap({nn.Conv2d: GeneralizedGammaRule()}), or skip all checks at
your own risk with LRP(model, composite, skip_checks=True)."""

_SOFTMAX_FUNCTIONS = _softmax_functions()


def _function_status(step: FunctionStep) -> str:
    name = getattr(step.target, "__name__", str(step.target))
    if name in ("sigmoid", "tanh", "softmax", "log_softmax", "elu", "softplus", "hardsigmoid", "selu", "celu"):
        return f"{UNSUPPORTED_ACTIVATION} {name}"
    return "unknown function"


def is_gate(step: Step) -> bool:
    """A sigmoid or hard sigmoid (module or function): the gate of a gated product."""
    if step.kind == LAYER:
        return isinstance(step.module, GATE_TYPES)
    return isinstance(step.module, FunctionStep) and step.module.target in GATE_FUNCTIONS


def _is_held_gate(plan: Plan, i: int, rules: Sequence[LRPRule] | None) -> bool:
    """Whether step i is a gate whose output only reaches element-wise products as their gate (through
    reshapes), each held constant by GateRule: no relevance ever reaches it."""
    if not is_gate(plan.steps[i]):
        return False
    todo, seen, reached = list(plan.consumers[i]), set(), False
    while todo:
        j = todo.pop()
        if j in seen:
            continue
        seen.add(j)
        step = plan.steps[j]
        if isinstance(step.module, Mul):
            if not step.module.gate_inputs or (rules is not None and not isinstance(rules[j], GateRule)):
                return False
            reached = True
        elif isinstance(step.module, (Reshape, Route)) or (
            step.kind == LAYER and isinstance(step.module, DROPOUT_TYPES + RESHAPE_TYPES)
        ):
            todo += plan.consumers[j]
        else:
            return False
    return reached


def _is_leaky(step: Step) -> bool:
    if step.kind == LAYER:
        return isinstance(step.module, nn.LeakyReLU)
    return isinstance(step.module, FunctionStep) and step.module.target is _leaky_relu()


def _leaky_relu_problem(plan: Plan, rules: Sequence[LRPRule], i: int) -> str | None:
    """The status of a LeakyReLU whose next weighted layers do not all use GeneralizedGammaRule."""
    seen, todo, bad = set(), list(plan.consumers[i]), []
    while todo:
        j = todo.pop()
        if j in seen:
            continue
        seen.add(j)
        step = plan.steps[j]
        if step.kind == LAYER and has_weight(step.module):
            if not isinstance(rules[j], GeneralizedGammaRule):
                bad.append(f"{step.name!r} has {rules[j]!r}")
            continue
        todo += plan.consumers[j]
    if not bad:
        return None
    return "LeakyReLU: the next weighted layer needs GeneralizedGammaRule (" + "; ".join(sorted(bad)) + ")"


def _leaky_relu() -> object:
    import torch.nn.functional as F

    return F.leaky_relu


def _describe_step(step: Step) -> str:
    if isinstance(step.module, FunctionStep):
        return step.module.function_name
    return _describe(step.module)


def _describe(layer: nn.Module) -> str:
    text = repr(layer)
    return text if "\n" not in text and len(text) < 70 else type(layer).__name__
