"""LRP for residual and branching models, on their torch.fx graph.

The model is traced into leaf modules and functional operations. Modules get rules from the
composite exactly as in sequential models (addressed by module name and type); functional
operations move relevance by their family (see ``graph_ops``). A node whose output feeds several
consumers sums the relevance coming back from each. Nothing is hand-written per architecture."""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from . import graph_ops as ops
from .analyzer import LRP, ForwardRecord, RelevanceHook
from .canonize import _fusable, fuse_batchnorm
from .checks import _HOW_TO_FIX as HOW_TO_FIX
from .checks import LRP_CONFIG, SUPPORTED, LRPConfig, ModelCheckError, SoftmaxOutputError, _table, layer_status
from .composites import Composite
from .context import LayerContext
from .layers import NONNEGATIVE_OUTPUT_TYPES, SIGN_PRESERVING_TYPES, SOFTMAX_TYPES
from .rules import stabilize

GRAPH_STABILIZER = 1e-9
_SOFTMAX_FUNCTIONS = (F.softmax, torch.softmax, F.log_softmax, torch.log_softmax)
_RELU_FUNCTIONS = (F.relu, torch.relu, F.relu6)


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
    """The model as a GraphModule of leaf layers and functions, or a GraphTraceError."""
    if isinstance(model, fx.GraphModule):
        return model
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


def _tensor_args(node: fx.Node) -> list[fx.Node]:
    return [a for a in node.all_input_nodes if a.op != "get_attr"]


def strip_softmax_graph(gm: fx.GraphModule) -> fx.GraphModule:
    """Remove a final softmax node (module, function or method) from a traced model."""
    out = next(n for n in gm.graph.nodes if n.op == "output")
    last = out.args[0]
    if isinstance(last, fx.Node) and _is_softmax(gm, last):
        gm = copy.deepcopy(gm)
        out = next(n for n in gm.graph.nodes if n.op == "output")
        last = out.args[0]
        out.args = (last.args[0],)
        gm.graph.erase_node(last)
        gm.graph.lint()
        gm.recompile()
    return gm


def _is_softmax(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(gm.get_submodule(node.target), SOFTMAX_TYPES)
    if node.op == "call_function":
        return node.target in _SOFTMAX_FUNCTIONS
    return node.op == "call_method" and node.target in ("softmax", "log_softmax")


def canonize_graph(model: nn.Module, config: LRPConfig = LRP_CONFIG) -> fx.GraphModule:
    """Fuse each BatchNorm into the Linear/Conv that produces its input, when that layer feeds
    only the BatchNorm and is used once in the graph. Returns a new GraphModule."""
    gm = copy.deepcopy(trace(model, config))
    uses: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            uses[node.target] = uses.get(node.target, 0) + 1
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not node.args or not isinstance(node.args[0], fx.Node):
            continue
        producer = node.args[0]
        if producer.op != "call_module" or len(producer.users) != 1 or uses.get(producer.target) != 1:
            continue
        if uses.get(node.target) != 1:
            continue
        layer, bn = gm.get_submodule(producer.target), gm.get_submodule(node.target)
        if _fusable(layer, bn):
            fuse_batchnorm(layer, bn)
            node.replace_all_uses_with(producer)
            gm.graph.erase_node(node)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


@dataclass
class NodeRecord:
    """What the relevance pass needs of one node: its output and, per kind, its inputs."""

    node: fx.Node
    output: Any
    context: LayerContext | None = None
    inputs: list[Any] = field(default_factory=list)
    leaves: list[Tensor] = field(default_factory=list)
    graph_output: Tensor | None = None


class GraphLRP(LRP):
    """LRP over a torch.fx graph; built automatically by ``LRP(model, composite)`` for models
    that are not ``nn.Sequential``."""

    name = "LRP"

    def __init__(
        self,
        model: nn.Module,
        composite: Composite | None = None,
        *,
        flatten: bool = True,
        skip_checks: bool = False,
        config: LRPConfig = LRP_CONFIG,
    ) -> None:
        self.graph_module = trace(model, config)
        self.model = self.graph_module
        self.nodes: list[fx.Node] = list(self.graph_module.graph.nodes)
        self.module_nodes = [n for n in self.nodes if n.op == "call_module"]
        self.named_layers = [(str(n.target), self.graph_module.get_submodule(n.target)) for n in self.module_nodes]
        self._assign_rules(composite)
        self._rule_of = {n: r for n, r in zip(self.module_nodes, self.rules, strict=True)}
        self._family: dict[fx.Node, str] = {}
        for n in self.nodes:
            if n.op in ("call_function", "call_method"):
                fam = ops.family_of(n.op, n.target)
                if fam is not None:
                    self._family[n] = fam
        if not skip_checks:
            self._check_graph(config)
        self._check_rules()
        self._nonnegative = self._static_signs_graph()
        self._memos = {n: {} for n in self.module_nodes}
        self._module_index = {n: i for i, n in enumerate(self.module_nodes)}

    # -- checks -----------------------------------------------------------------------------
    def _check_graph(self, config: LRPConfig) -> None:
        out = next(n for n in self.nodes if n.op == "output")
        last = out.args[0]
        if isinstance(last, fx.Node) and _is_softmax(self.graph_module, last):
            raise SoftmaxOutputError(
                f"The model ends in a softmax ({last.name}). LRP explains logits: call strip_softmax(model) first."
            )
        rows = []
        for n in self.nodes:
            if n.op == "call_module":
                layer = self.graph_module.get_submodule(n.target)
                rows.append((str(n.target), type(layer).__name__, layer_status(layer, config)))
            elif n.op in ("call_function", "call_method"):
                registered = n.op == "call_function" and config.is_layer(n.target)
                status = SUPPORTED if n in self._family or registered else "unknown function"
                rows.append((n.name, ops.describe(n.op, n.target), status))
        if any(status != SUPPORTED for *_, status in rows):
            raise ModelCheckError("Unknown layer or function found in model\n" + _table(rows) + HOW_TO_FIX, rows)

    def _check_leaky_relu(self) -> None:  # the sequential check does not apply to graphs
        return None

    def _static_signs_graph(self) -> dict[fx.Node, bool]:
        signs: dict[fx.Node, bool] = {}
        for n in self.nodes:
            inputs = [signs.get(a, False) for a in _tensor_args(n)]
            if n.op == "call_module":
                layer = self.graph_module.get_submodule(n.target)
                if isinstance(layer, NONNEGATIVE_OUTPUT_TYPES):
                    signs[n] = True
                else:
                    signs[n] = isinstance(layer, SIGN_PRESERVING_TYPES) and all(inputs)
            elif n.op == "call_function" and n.target in _RELU_FUNCTIONS:
                signs[n] = True
            elif n.op == "call_method" and n.target in ("relu", "relu_"):
                signs[n] = True
            elif self._family.get(n) in (ops.ADD, ops.CAT, ops.RESHAPE, ops.GRADIENT, ops.LRP0):
                signs[n] = bool(inputs) and all(inputs) and n.target not in (operator.sub, torch.sub, "sub")
            else:
                signs[n] = False
        return signs

    # -- forward ----------------------------------------------------------------------------
    def forward_record(self, x: Tensor, stop: int | None = None) -> ForwardRecord:
        if stop is not None:
            raise NotImplementedError("partial forward passes are only defined for sequential models")
        env: dict[fx.Node, Any] = {}
        records: dict[fx.Node, NodeRecord] = {}
        gm = self.graph_module
        with torch.no_grad():
            for n in self.nodes:
                if n.op == "placeholder":
                    env[n] = x
                elif n.op == "get_attr":
                    env[n] = _fetch_attr(gm, n.target)
                elif n.op == "call_module":
                    env[n], records[n] = self._run_module(n, env)
                elif n.op in ("call_function", "call_method"):
                    env[n], records[n] = self._run_function(n, env)
                elif n.op == "output":
                    output = fx.node.map_arg(n.args[0], lambda a: env[a])
        self._records = records
        return ForwardRecord(contexts=[], output=output)

    def _run_module(self, n: fx.Node, env: dict[fx.Node, Any]) -> tuple[Tensor, NodeRecord]:
        layer = self.graph_module.get_submodule(n.target)
        rule = self._rule_of[n]
        a = env[n.args[0]]
        if getattr(layer, "inplace", False):
            a = a.clone()
        ctx = LayerContext(layer, a, a, self._nonnegative.get(n.args[0], False), name=str(n.target),
                           index=self._module_index[n], memo=self._memos[n],
                           output_nonnegative=self._nonnegative.get(n, False))
        if rule.needs_graph(layer):
            leaf = a.detach().requires_grad_(True)
            with torch.enable_grad():
                out = layer(leaf)
            ctx.input, ctx.graph_output = leaf, out
            out = out.detach()
        else:
            out = layer(a)
        ctx.output = out
        return out, NodeRecord(n, out, context=ctx)

    def _run_function(self, n: fx.Node, env: dict[fx.Node, Any]) -> tuple[Any, NodeRecord]:
        family = self._family.get(n)
        target = n.target
        if n.op == "call_method":
            target = ops.OUT_OF_PLACE_METHODS.get(target, target)
        else:
            target = ops.OUT_OF_PLACE.get(target, target)
        kwargs = {k: v for k, v in n.kwargs.items() if k != "inplace"}
        args = fx.node.map_arg(n.args, lambda a: env[a])
        kwargs = fx.node.map_arg(kwargs, lambda a: env[a])
        record = NodeRecord(n, None, inputs=[env[a] for a in _tensor_args(n)])
        if family in (ops.GRADIENT, ops.LRP0) or family is None:
            # record autograd from the tensor inputs that come from other nodes
            leaves: dict[fx.Node, Tensor] = {}
            for a in _tensor_args(n):
                if isinstance(env[a], Tensor) and env[a].is_floating_point():
                    leaves[a] = env[a].detach().requires_grad_(True)
            args = fx.node.map_arg(n.args, lambda a: leaves.get(a, env[a]))
            kwargs = fx.node.map_arg(kwargs, lambda a: leaves.get(a, env[a]))
            with torch.enable_grad():
                out = _call(n.op, target, args, kwargs)
            record.leaves = [leaves.get(a) for a in _tensor_args(n)]
            if isinstance(out, Tensor) and out.requires_grad:
                record.graph_output = out
                out = out.detach()
        else:
            out = _call(n.op, target, args, kwargs)
        record.output = out
        return out, record

    # -- relevance --------------------------------------------------------------------------
    def relevance_pass(
        self,
        record: ForwardRecord,
        relevance: Tensor,
        *,
        keep_layerwise: bool = False,
        start: int | None = None,
        stop: int = 0,
        hooks: dict[int, RelevanceHook] | None = None,
    ) -> tuple[Tensor, Any]:
        if start is not None or stop != 0 or hooks:
            raise NotImplementedError("relevance from or to an inner boundary (CRP) needs a sequential model")
        records = self._records
        out_node = next(n for n in self.nodes if n.op == "output").args[0]
        pending: dict[fx.Node, Tensor] = {out_node: relevance}
        kept: dict[str, Tensor] = {}
        result = None
        for n in reversed(self.nodes):
            rel = pending.pop(n, None)
            if rel is None:
                continue
            if keep_layerwise:
                kept[n.name] = rel
            if n.op == "placeholder":
                result = rel
                continue
            for source, share in self._distribute(n, records[n], rel):
                pending[source] = share if source not in pending else pending[source] + share
        if result is None:
            raise RuntimeError("no relevance reached the model input")
        layerwise = dict(reversed(list(kept.items()))) if keep_layerwise else None
        return result, layerwise

    def _distribute(self, n: fx.Node, rec: NodeRecord, rel: Tensor) -> list[tuple[fx.Node, Tensor]]:
        """Relevance handed from node n to each of its tensor inputs."""
        sources = _tensor_args(n)
        if n.op == "call_module":
            return [(n.args[0], self._rule_of[n].relevance(rec.context, rel))]
        family = self._family.get(n)
        if family == ops.IGNORE:
            return []
        if family == ops.PASS:
            return [(sources[0], rel.reshape(rec.inputs[0].shape))]
        if family == ops.RESHAPE:
            return [(sources[0], rel.reshape(rec.inputs[0].shape))]
        if family in (ops.ADD, ops.SUB):
            return _split_sum(n, rec, rel, negate_second=family == ops.SUB)
        if family == ops.CAT:
            return _split_cat(n, rec, rel)
        if family in (ops.GRADIENT, ops.LRP0, None):
            return _autograd_share(rec, sources, rel, lrp0=family == ops.LRP0)
        raise AssertionError(family)

    def relevance_by_layer(self, expl: Any) -> dict[str, Tensor]:
        """Relevance at the output of each module (by module name; a module used twice: its last use)."""
        layerwise = expl.layerwise_relevances
        if layerwise is None:
            raise ValueError("the explanation has no layerwise relevances: analyze with layerwise_relevances=True")
        return {str(n.target): layerwise[n.name] for n in self.module_nodes if n.name in layerwise}

    def __repr__(self) -> str:
        width = max((len(f"{n}: {type(layer).__name__}") for n, layer in self.named_layers), default=0)
        lines = []
        for node in self.nodes:
            if node.op == "call_module":
                layer = self.graph_module.get_submodule(node.target)
                label = f"{node.target}: {_short(layer)}"
                lines.append(f"  {label:<{width}} => {self._rule_of[node]!r},")
            elif node.op in ("call_function", "call_method"):
                fam = self._family.get(node, "unknown")
                if fam != ops.IGNORE:
                    lines.append(f"  {node.name}: {ops.describe(node.op, node.target)} => {fam}")
        return "LRP(graph,\n" + "\n".join(lines) + "\n)"


def _short(layer: nn.Module) -> str:
    text = repr(layer)
    return text if "\n" not in text else f"{type(layer).__name__}(...)"


def _fetch_attr(gm: fx.GraphModule, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj.detach() if isinstance(obj, Tensor) else obj


def _call(op: str, target: Any, args: Any, kwargs: dict[str, Any]) -> Any:
    if op == "call_method":
        self_obj, *rest = args
        return getattr(self_obj, target)(*rest, **kwargs)
    return target(*args, **kwargs)


def _sum_to(t: Tensor, shape: torch.Size) -> Tensor:
    """Undo broadcasting: sum t down to `shape`."""
    if t.shape == shape:
        return t
    while t.dim() > len(shape):
        t = t.sum(0)
    for i, size in enumerate(shape):
        if size == 1 and t.shape[i] != 1:
            t = t.sum(i, keepdim=True)
    return t


def _split_sum(n: fx.Node, rec: NodeRecord, rel: Tensor, negate_second: bool) -> list[tuple[fx.Node, Tensor]]:
    """R_i = x_i · R / stab(Σ x): each summand gets relevance in proportion to its contribution."""
    operands = [n.args[0], n.args[1]]
    alpha = n.kwargs.get("alpha", 1) if len(n.args) < 3 else n.args[2]
    values = []
    for i, arg in enumerate(operands):
        value = rec.inputs[_tensor_args(n).index(arg)] if isinstance(arg, fx.Node) and arg.op != "get_attr" else arg
        if isinstance(arg, fx.Node) and arg.op == "get_attr":
            value = _fetch_attr_from_record(rec, arg)
        sign = -1 if (negate_second and i == 1) else 1
        scale = alpha if i == 1 else 1
        values.append(value * (sign * scale) if isinstance(value, Tensor) else value * sign * scale)
    s = rel / stabilize(rec.output, GRAPH_STABILIZER)
    shares = []
    for arg, value in zip(operands, values, strict=True):
        if isinstance(arg, fx.Node) and arg.op != "get_attr":
            shares.append((arg, _sum_to(value * s, rec.inputs[_tensor_args(n).index(arg)].shape)))
    return shares


def _fetch_attr_from_record(rec: NodeRecord, node: fx.Node) -> Any:
    gm = node.graph.owning_module
    return _fetch_attr(gm, node.target)


def _split_cat(n: fx.Node, rec: NodeRecord, rel: Tensor) -> list[tuple[fx.Node, Tensor]]:
    tensors = n.args[0]
    dim = n.kwargs.get("dim", n.args[1] if len(n.args) > 1 else 0)
    sizes = [(rec.inputs[_tensor_args(n).index(t)] if isinstance(t, fx.Node) else t).shape[dim] for t in tensors]
    pieces = torch.split(rel, sizes, dim=dim)
    return [(t, p) for t, p in zip(tensors, pieces, strict=True) if isinstance(t, fx.Node) and t.op != "get_attr"]


def _autograd_share(
    rec: NodeRecord, sources: list[fx.Node], rel: Tensor, lrp0: bool
) -> list[tuple[fx.Node, Tensor]]:
    """Gradient routing (exact for permutations/indexing/max) or LRP-0 through a linear map."""
    if rec.graph_output is None:
        return []
    pairs = [(s, leaf) for s, leaf in zip(sources, rec.leaves, strict=True) if leaf is not None]
    grad_out = rel / stabilize(rec.graph_output.detach(), GRAPH_STABILIZER) if lrp0 else rel
    grads = torch.autograd.grad(rec.graph_output, [leaf for _, leaf in pairs], grad_out, allow_unused=True)
    shares = []
    for (source, leaf), grad in zip(pairs, grads, strict=True):
        if grad is not None:
            shares.append((source, leaf.detach() * grad if lrp0 else grad))
    return shares


Handler = Callable[..., list[tuple[fx.Node, Tensor]]]
