"""Lower any model onto a plan: ``nn.Sequential`` as a chain, everything else through torch.fx.

The tracer keeps torch.nn layers (and layers registered on ``LRP_CONFIG``) whole; everything
else becomes functional operations, each given its family (``functional.py``) or, when the
engine does not know it, a generic :class:`~.functional.Function` that the model check refuses."""

from __future__ import annotations

import inspect
import operator
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from .attention import MASK_FUNCTIONS, lower_sdpa, lowering_of
from .checks import LRP_CONFIG, LRPConfig, is_gate
from .export import is_exported, lower_export
from .functional import (
    Activation,
    Function,
    FunctionStep,
    Ignored,
    MatMul,
    Mul,
    Ref,
    Reshape,
    Route,
    Scale,
    Softmax,
    Unknown,
    family_of,
)
from .layers import DROPOUT_TYPES, RESHAPE_TYPES
from .plan import CONSTANT, FUNCTION, INPUT, LAYER, Plan, Step, sequential_plan


class GraphTraceError(TypeError):
    """torch.fx could not trace the model; the message says why and what to do."""


class _Tracer(fx.Tracer):
    """Keeps torch.nn layers and layers registered on LRP_CONFIG as leaves; records attention
    modules and ``F.scaled_dot_product_attention`` as their lowered steps (``attention.py``)."""

    def __init__(self, config: LRPConfig) -> None:
        super().__init__()
        self.config = config
        #: layers the lowering adds (the q/k/v parts of in-projections), by target name
        self.extra_modules: dict[str, nn.Module] = {}

    def _registered(self, m: nn.Module) -> bool:
        return any(isinstance(t, type) and isinstance(m, t) for t in self.config._layers)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if self._registered(m):
            return True
        if lowering_of(m) is not None or type(m) is nn.Softmax:  # nn.Softmax: traced as F.softmax (a step)
            return False
        return super().is_leaf_module(m, module_qualified_name) and not isinstance(m, nn.Sequential)

    def call_module(self, m: nn.Module, forward: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        lowering = None if self._registered(m) else lowering_of(m)
        if lowering is None:
            return super().call_module(m, forward, args, kwargs)
        path = self.path_of_module(m)
        return super().call_module(m, lambda *a, **k: lowering(self, m, path, *a, **k), args, kwargs)

    def create_proxy(self, kind: str, target: Any, args: Any, kwargs: Any, *rest: Any, **options: Any) -> Any:
        if kind == "call_function" and target is F.scaled_dot_product_attention:
            return lower_sdpa(self, tuple(args), dict(kwargs))
        return super().create_proxy(kind, target, args, kwargs, *rest, **options)


def trace(model: nn.Module, config: LRPConfig = LRP_CONFIG) -> fx.GraphModule:
    """The model as a GraphModule of leaf layers and functions (sharing the model's layers), or a
    GraphTraceError that says what to do. A torch.export program is lowered onto layers and torch
    functions (``export.py``)."""
    if isinstance(model, fx.GraphModule):
        return lower_export(model) if is_exported(model) else model
    tracer = _Tracer(config)
    try:
        fixed = _optional_arguments(model)
        graph = tracer.trace(model, concrete_args=fixed)
        if fixed:
            _drop_fixed_arguments(graph)
    except Exception as exc:  # fx raises many types (TraceError, TypeError, NotImplementedError...)
        raise GraphTraceError(
            f"torch.fx could not trace {type(model).__name__}: {type(exc).__name__}: {exc}\n"
            "LRP needs a static graph of the model's layers. What to do: remove data-dependent Python "
            "control flow from forward() (if/for on tensor values), or register the offending sub-module as "
            "a layer with LRP_CONFIG.supports_layer(MyBlock) so it is kept whole (it then gets a rule like "
            "any layer), or rewrite the model as nn.Sequential."
        ) from exc
    if not tracer.extra_modules:
        return fx.GraphModule(tracer.root, graph, type(model).__name__)
    return fx.GraphModule(_root_with(tracer.root, graph, tracer.extra_modules), graph, type(model).__name__)


def _optional_arguments(model: nn.Module) -> dict[str, Any] | None:
    """forward()'s parameters after the input that have defaults (timm's ``attn_mask=None``,
    ``is_causal=False``), fixed at their defaults: LRP explains a model of one input."""
    try:
        parameters = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return None
    fixed = {
        p.name: p.default
        for p in parameters[1:]
        if p.default is not inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    return fixed or None


def _drop_fixed_arguments(graph: fx.Graph) -> None:
    """Remove the placeholders of arguments fixed at their defaults and fx's checks of them
    (``_assert_is_none(attn_mask)``), which nothing else uses."""
    order = {node: i for i, node in enumerate(graph.nodes)}
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    for node in placeholders[1:]:
        doomed, todo = set(), [node]
        while todo:
            current = todo.pop()
            if current in doomed:
                continue
            doomed.add(current)
            todo += list(current.users)
        if any(d.op == "output" for d in doomed):
            continue  # used by the model's result: leave it for graph_plan to refuse
        for dead in sorted(doomed, key=order.__getitem__, reverse=True):
            graph.erase_node(dead)


def _root_with(model: nn.Module, graph: fx.Graph, extra: dict[str, nn.Module]) -> dict[str, Any]:
    """Every module and attribute the graph reads, from `model` or from the lowering's layers
    (a GraphModule built from this dict shares them: nothing is copied)."""
    root: dict[str, Any] = {}
    for node in graph.nodes:
        if node.op in ("call_module", "get_attr"):
            target = str(node.target)
            if target in extra:
                root[target] = extra[target]
                continue
            obj: Any = model
            for part in target.split("."):
                obj = getattr(obj, part)
            root[target] = obj
    return root


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
        if not any(lowering_of(layer) is not None and not config.is_layer(layer) for _, layer in layers):
            return sequential_plan(layers)
        return graph_plan(trace(model, config), config)  # attention inside: lowered onto steps
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
    sizes: set[fx.Node] = set()
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
        elif _is_size(node, sizes):
            sizes.add(node)
            step = Step(node.name, FUNCTION, _template(Ignored, node), inputs, scope=_scope(node))
        elif _splits(node):  # its pieces are steps of their own (below); the tuple carries nothing
            step = Step(node.name, FUNCTION, _template(Ignored, node), inputs, scope=_scope(node))
        elif node.target is operator.getitem and isinstance(node.args[0], fx.Node) and _splits(node.args[0]):
            whole = node.args[0]
            piece = _template(Route, whole)
            piece = Route("call_function", tuple_item, (whole.op, whole.target, piece.args, piece.kwargs, node.args[1]),
                          {})
            step = Step(node.name, FUNCTION, piece, [index[a] for a in whole.all_input_nodes], scope=_scope(node))
        else:
            fn = _function_step(node, inputs, config, sizes, gm)
            step = Step(node.name, FUNCTION, fn, inputs, scope=_scope(node))
        index[node] = len(steps)
        steps.append(step)
    if output is None:  # pragma: no cover - fx graphs always have an output node
        raise GraphTraceError("the traced graph has no output")
    _mark_softmax_operands(steps)
    _mark_gates(steps)
    return Plan(steps, output, "graph")


#: families a value passes through unchanged in kind (attention probabilities stay probabilities)
_TRANSPARENT = (Reshape, Route, Activation, Scale)


def _mark_softmax_operands(steps: list[Step]) -> None:
    """Tell each MatMul which of its operands are computed from a softmax (through reshapes,
    dropout, scaling): the constants of CP-LRP."""
    for step in steps:
        if not isinstance(step.module, MatMul):
            continue
        marked = set()
        for position, j in enumerate(step.inputs):
            while steps[j].inputs and (
                isinstance(steps[j].module, _TRANSPARENT)
                or (steps[j].kind == LAYER and isinstance(steps[j].module, DROPOUT_TYPES + RESHAPE_TYPES))
            ):  # attn_drop(softmax(...)) is still the attention probabilities
                module = steps[j].module
                j = steps[j].inputs[module.data_input if isinstance(module, FunctionStep) else 0]
            if isinstance(steps[j].module, Softmax):
                marked.add(position)
        step.module.softmax_inputs = frozenset(marked)


def _producer(steps: list[Step], j: int) -> int:
    """The step a value comes from, looking through reshapes, routing, expansion and dropout."""
    while steps[j].inputs and (
        isinstance(steps[j].module, (Reshape, Route))
        or (steps[j].kind == LAYER and isinstance(steps[j].module, DROPOUT_TYPES + RESHAPE_TYPES))
    ):
        module = steps[j].module
        j = steps[j].inputs[module.data_input if isinstance(module, FunctionStep) else 0]
    return j


def _mark_gates(steps: list[Step]) -> None:
    """Tell each element-wise product which of its operands is a gate (computed through a sigmoid
    or hard sigmoid): GateRule holds it constant."""
    for step in steps:
        if isinstance(step.module, Mul):
            gates = {k for k, j in enumerate(step.inputs) if is_gate(steps[_producer(steps, j)])}
            step.module.gate_inputs = frozenset(gates) if len(gates) == 1 else frozenset()


#: functions and methods that return a tuple of tensors (``qkv.unbind(0)``, ``x.chunk(3, -1)``)
SPLITTING = frozenset({torch.unbind, torch.split, torch.chunk, torch.tensor_split, "unbind", "split", "chunk",
                       "tensor_split"})


def _splits(node: fx.Node) -> bool:
    return node.op in ("call_function", "call_method") and node.target in SPLITTING


def tuple_item(op: str, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any], i: int) -> Any:
    """Item i of a splitting function's result: one step per piece, so relevance routes to the
    part of the input the piece came from (the gradient)."""
    if op == "call_method":
        first, *rest = args
        return getattr(first, target)(*rest, **kwargs)[i]
    return target(*args, **kwargs)[i]


#: methods and attributes whose value is a size, a dtype or a device, never a tensor
SIZE_METHODS = frozenset({"size", "dim", "numel", "nelement", "ndimension"})
SIZE_ATTRIBUTES = frozenset({"shape", "ndim", "dtype", "device", "is_cuda"})


def _is_size(node: fx.Node, sizes: set[fx.Node]) -> bool:
    """Whether `node` computes a Python number or a torch.Size from sizes (``x.size(0)``,
    ``x.shape[0]``, ``n // 2``, ``h ** 2``): such nodes are replayed on every batch and carry no
    relevance (folding them into constants would freeze the batch size of the trace)."""
    if node.op not in ("call_function", "call_method"):
        return False
    if node.op == "call_method" and node.target in SIZE_METHODS:
        return True
    if node.op == "call_function" and node.target is getattr:
        return len(node.args) > 1 and node.args[1] in SIZE_ATTRIBUTES
    inputs = node.all_input_nodes
    return bool(inputs) and all(a in sizes for a in inputs)


def _template(family: type[FunctionStep], node: fx.Node, **extra: Any) -> FunctionStep:
    positions = {a: i for i, a in enumerate(node.all_input_nodes)}
    args = fx.node.map_arg(node.args, lambda a: Ref(positions[a]))
    kwargs = fx.node.map_arg(node.kwargs, lambda a: Ref(positions[a]))
    return family(node.op, node.target, _tuple(args), dict(kwargs), **extra)


def _function_step(
    node: fx.Node, inputs: list[int], config: LRPConfig, sizes: set[fx.Node], gm: fx.GraphModule
) -> FunctionStep:
    family = family_of(node.op, node.target)
    if family is None and node.op == "call_function":
        if node.target in MASK_FUNCTIONS:
            family = Ignored
        elif config.is_activation(node.target):
            family = Activation
        elif config.is_layer(node.target):
            family = Function
    if family is Scale:
        data = _scaled_operand(node, sizes)
        if data is None and _is_product_of_two_activations(node, sizes):
            return _template(Mul, node)
        if data is None:
            return _template(Unknown, node)
        return _template(Scale, node, data_input=node.all_input_nodes.index(data))
    return _template(family or Unknown, node)


MULTIPLICATIONS = frozenset({operator.mul, operator.imul, torch.mul, torch.multiply, "mul", "mul_", "__mul__"})


def _is_product_of_two_activations(node: fx.Node, sizes: set[fx.Node]) -> bool:
    """``x * g`` with two different activations as operands (not constants, parameters or sizes;
    ``x * x`` is a square, not a product of two signals, and stays refused)."""
    if node.target not in MULTIPLICATIONS:
        return False
    operands: list[fx.Node] = []
    fx.node.map_arg((node.args, node.kwargs), operands.append)
    distinct = len(operands) == 2 and operands[0] is not operands[1]
    return distinct and all(a not in sizes and a.op != "get_attr" for a in operands)


def _scaled_operand(node: fx.Node, sizes: set[fx.Node]) -> fx.Node | None:
    """The activation a product/quotient scales by a constant, a parameter or a size; None when it
    is not linear in one activation (a product of two activations, a division by an activation,
    rounding division)."""
    if node.kwargs.get("rounding_mode") is not None:
        return None
    operands: list[fx.Node] = []
    fx.node.map_arg((node.args, node.kwargs), operands.append)  # with repeats: x * x has two
    data = [a for a in operands if a not in sizes and a.op != "get_attr"]
    if len(data) != 1:
        return None
    (operand,) = data
    divides = node.target in (operator.truediv, operator.itruediv, torch.div, torch.divide, torch.true_divide)
    divides = divides or (node.op == "call_method" and node.target in ("div", "div_", "true_divide"))
    if divides and (not node.args or node.args[0] is not operand):
        return None  # c / x is not linear in x
    return operand


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
