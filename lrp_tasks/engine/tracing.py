"""Lower any model onto a plan: ``nn.Sequential`` as a chain, everything else through torch.fx.

The tracer keeps torch.nn layers (and layers registered on ``LRP_CONFIG``) whole; everything
else becomes functional operations, each given its family (``functional.py``) or, when the
engine does not know it, a generic :class:`~.functional.Function` that the model check refuses."""

from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx
from torch import nn

from .checks import LRP_CONFIG, LRPConfig
from .export import is_exported, lower_export
from .functional import Activation, Function, FunctionStep, Ref, Unknown, family_of
from .plan import CONSTANT, FUNCTION, INPUT, LAYER, Plan, Step, sequential_plan


class GraphTraceError(TypeError):
    """torch.fx could not trace the model; the message says why and what to do."""


class _Tracer(fx.Tracer):
    """Keeps torch.nn layers and layers registered on LRP_CONFIG as leaves."""

    def __init__(self, config: LRPConfig) -> None:
        super().__init__()
        self.config = config

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if any(isinstance(t, type) and isinstance(m, t) for t in self.config._layers):
            return True
        return super().is_leaf_module(m, module_qualified_name) and not isinstance(m, nn.Sequential)


def trace(model: nn.Module, config: LRPConfig = LRP_CONFIG) -> fx.GraphModule:
    """The model as a GraphModule of leaf layers and functions (sharing the model's layers), or a
    GraphTraceError that says what to do. A torch.export program is lowered onto layers and torch
    functions (``export.py``)."""
    if isinstance(model, fx.GraphModule):
        return lower_export(model) if is_exported(model) else model
    tracer = _Tracer(config)
    try:
        graph = tracer.trace(model)
    except Exception as exc:  # fx raises many types (TraceError, TypeError, NotImplementedError...)
        raise GraphTraceError(
            f"torch.fx could not trace {type(model).__name__}: {type(exc).__name__}: {exc}\n"
            "LRP needs a static graph of the model's layers. What to do: remove data-dependent Python "
            "control flow from forward() (if/for on tensor values), or register the offending sub-module as "
            "a layer with LRP_CONFIG.supports_layer(MyBlock) so it is kept whole (it then gets a rule like "
            "any layer), or rewrite the model as nn.Sequential."
        ) from exc
    return fx.GraphModule(tracer.root, graph, type(model).__name__)


def named_leaf_layers(model: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """Layers of nested ``nn.Sequential`` containers in execution order, with their full names."""
    if not isinstance(model, nn.Sequential):
        return [(prefix, model)]
    out: list[tuple[str, nn.Module]] = []
    for name, child in model._modules.items():  # keeps a layer listed twice
        out += named_leaf_layers(child, f"{prefix}.{name}" if prefix else name)
    return out


def build_plan(model: nn.Module, *, flatten: bool = True, config: LRPConfig = LRP_CONFIG) -> Plan:
    """The plan of any model: a chain for ``nn.Sequential`` (its leaf layers when `flatten`, else
    its children) and for a single known layer; the torch.fx graph otherwise."""
    if isinstance(model, nn.Sequential):
        layers = named_leaf_layers(model) if flatten else list(model.named_children())
        return sequential_plan(layers)
    if isinstance(model, torch.jit.ScriptModule):
        raise GraphTraceError(
            "TorchScript models cannot be explained: their graph is compiled code the engine cannot lower onto "
            "layers. Give the model's builder and weights, or export it with torch.export.export(model.eval(), "
            "(example_input,)) and torch.export.save(...)."
        )
    if not isinstance(model, fx.GraphModule) and (config.is_layer(model) or config.is_activation(model)):
        return sequential_plan([("", model)])
    return graph_plan(trace(model, config), config)


def _scope(node: fx.Node) -> str:
    """The module path a node sits in (for a layer: the path of its parent)."""
    keys = [str(v[0]) for v in (node.meta.get("nn_module_stack") or {}).values()]
    if node.op == "call_module":
        keys = keys[:-1]
    return keys[-1] if keys else ""


def graph_plan(gm: fx.GraphModule, config: LRPConfig = LRP_CONFIG) -> Plan:
    """Steps of a traced model in graph order (fx orders nodes topologically)."""
    steps: list[Step] = []
    index: dict[fx.Node, int] = {}
    uses: dict[str, int] = {}
    output = None
    for node in gm.graph.nodes:
        if node.op == "output":
            result = node.args[0]
            if isinstance(result, (tuple, list)) and len(result) == 1:  # exported programs return (logits,)
                result = result[0]
            if not isinstance(result, fx.Node):
                raise GraphTraceError(
                    f"{gm.__class__.__name__} returns {type(result).__name__}; LRP explains a model that returns "
                    "one tensor of logits (wrap the model to return only the logits)"
                )
            output = index[result]
            continue
        inputs = [index[a] for a in node.all_input_nodes]
        if node.op == "placeholder":
            if any(s.kind == INPUT for s in steps):
                raise GraphTraceError(f"{gm.__class__.__name__}.forward takes several inputs; LRP explains one")
            step = Step("input", INPUT)
        elif node.op == "get_attr":
            step = Step(node.name, CONSTANT, value=(gm, str(node.target)))
        elif node.op == "call_module":
            target = str(node.target)
            if len(node.args) != 1 or node.kwargs or not isinstance(node.args[0], fx.Node):
                raise GraphTraceError(
                    f"layer {target!r} is called with {len(node.args)} arguments; LRP handles layers with one input "
                    "(register a wrapper that takes one tensor, or make it part of a traced forward)"
                )
            n = uses.get(target, 0)
            uses[target] = n + 1
            name = target if not n else f"{target}@{n}"
            step = Step(name, LAYER, gm.get_submodule(target), inputs, module_name=target, scope=_scope(node))
        else:
            step = Step(node.name, FUNCTION, _function_step(node, inputs, config), inputs, scope=_scope(node))
        index[node] = len(steps)
        steps.append(step)
    if output is None:  # pragma: no cover - fx graphs always have an output node
        raise GraphTraceError("the traced graph has no output")
    return Plan(steps, output, "graph")


def _function_step(node: fx.Node, inputs: list[int], config: LRPConfig) -> FunctionStep:
    positions = {a: i for i, a in enumerate(node.all_input_nodes)}
    args = fx.node.map_arg(node.args, lambda a: Ref(positions[a]))
    kwargs = fx.node.map_arg(node.kwargs, lambda a: Ref(positions[a]))
    family = family_of(node.op, node.target)
    if family is None and node.op == "call_function":
        if config.is_activation(node.target):
            family = Activation
        elif config.is_layer(node.target):
            family = Function
    step = (family or Unknown)(node.op, node.target, _tuple(args), dict(kwargs))
    return step


def _tuple(args: Any) -> tuple[Any, ...]:
    return tuple(args) if isinstance(args, (tuple, list)) else (args,)


__all__ = [
    "CONSTANT",
    "FUNCTION",
    "GraphTraceError",
    "build_plan",
    "graph_plan",
    "named_leaf_layers",
    "trace",
]
