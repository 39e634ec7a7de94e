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

from .layers import (
    ACTIVATION_TYPES,
    BUILTIN_LAYER_TYPES,
    REFUSED_ACTIVATION_TYPES,
    SOFTMAX_TYPES,
    is_instance,
)

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
        return isinstance(obj, ACTIVATION_TYPES) or obj in _FUNCTIONAL_ACTIVATIONS

    def is_layer(self, obj: object) -> bool:
        if any(obj is t or (isinstance(t, type) and isinstance(obj, t)) for t in self._layers):
            return True
        return is_instance(obj, BUILTIN_LAYER_TYPES)


def _functional_activations() -> tuple[Callable[..., Any], ...]:
    import torch
    import torch.nn.functional as F

    return (F.relu, F.relu6, F.gelu, F.silu, F.mish, torch.relu, F.leaky_relu)


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
LRP(model, composite) traces them automatically."""


def check_model(layers: Sequence[tuple[str, nn.Module]], config: LRPConfig = LRP_CONFIG) -> None:
    """Raise ModelCheckError with a per-layer table unless every layer is supported."""
    if layers and isinstance(layers[-1][1], SOFTMAX_TYPES):
        name = layers[-1][0]
        raise SoftmaxOutputError(
            f"The model ends in a softmax ({name}: {type(layers[-1][1]).__name__}). LRP explains logits: "
            "call strip_softmax(model) first."
        )
    rows = [(name, _describe(layer), layer_status(layer, config)) for name, layer in layers]
    if all(status == SUPPORTED for *_, status in rows):
        return
    raise ModelCheckError("Unknown layer or activation function found in model\n" + _table(rows) + _HOW_TO_FIX, rows)


def _describe(layer: nn.Module) -> str:
    text = repr(layer)
    return text if "\n" not in text and len(text) < 70 else type(layer).__name__
