"""Lower ``torch.export`` programs onto the plan: aten operations become layers and functions.

An exported program (``torch.export.load(path).module()``) is a GraphModule of aten operations
on parameters held as attributes: ``aten.conv2d(x, conv1.weight, conv1.bias, ...)``. Rules need
layers, so each aten convolution, linear map and batch norm becomes the torch.nn layer it stands
for, named after its weight (``conv1``) and sharing its tensors; every other aten operation becomes
the torch function of the same family (``aten.add.Tensor`` → ``torch.add``), so composites, checks
and canonization see an exported model exactly as they see the traced original. An aten operation
the engine does not know stays as it is, and the model check names it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

aten = torch.ops.aten


def is_exported(gm: fx.GraphModule) -> bool:
    """Whether the graph holds aten operations (a torch.export program)."""
    return any(isinstance(n.target, torch._ops.OpOverload) for n in gm.graph.nodes)


# aten operation → the torch function of the same signature (and family)
FUNCTIONS: dict[Any, Callable[..., Any]] = {
    aten.relu.default: torch.relu,
    aten.relu_.default: torch.relu,
    aten.add.Tensor: torch.add,
    aten.add_.Tensor: torch.add,
    aten.sub.Tensor: torch.sub,
    aten.cat.default: torch.cat,
    aten.flatten.using_ints: torch.flatten,
    aten.view.default: torch.reshape,
    aten.reshape.default: torch.reshape,
    aten._unsafe_view.default: torch.reshape,
    aten.squeeze.dim: torch.squeeze,
    aten.unsqueeze.default: torch.unsqueeze,
    aten.permute.default: torch.permute,
    aten.transpose.int: torch.transpose,
    aten.mean.dim: torch.mean,
    aten.sum.dim_IntList: torch.sum,
    aten.max_pool1d.default: F.max_pool1d,
    aten.max_pool2d.default: F.max_pool2d,
    aten.max_pool3d.default: F.max_pool3d,
    aten.avg_pool1d.default: F.avg_pool1d,
    aten.avg_pool2d.default: F.avg_pool2d,
    aten.avg_pool3d.default: F.avg_pool3d,
    aten.adaptive_avg_pool1d.default: F.adaptive_avg_pool1d,
    aten.adaptive_avg_pool2d.default: F.adaptive_avg_pool2d,
    aten.adaptive_avg_pool3d.default: F.adaptive_avg_pool3d,
    aten.dropout.default: F.dropout,
    aten.leaky_relu.default: F.leaky_relu,
    aten.softmax.int: torch.softmax,
    aten.log_softmax.int: torch.log_softmax,
}

_CONVOLUTIONS = {
    aten.conv1d.default: nn.Conv1d,
    aten.conv2d.default: nn.Conv2d,
    aten.conv3d.default: nn.Conv3d,
}
_BATCHNORMS = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}


def _attr(gm: fx.GraphModule, node: Any) -> torch.Tensor | None:
    if isinstance(node, fx.Node) and node.op == "get_attr":
        obj: Any = gm
        for part in str(node.target).split("."):
            obj = getattr(obj, part)
        return obj
    return None


def _layer_name(gm: fx.GraphModule, weight: fx.Node, taken: set[str]) -> str:
    """The layer's name in the original model (``conv1`` for ``conv1.weight``), made unique."""
    base = str(weight.target).rpartition(".")[0] or weight.name
    name, k = base, 1
    while name in taken or _occupied(gm, name):
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


def _occupied(gm: fx.GraphModule, name: str) -> bool:
    """Whether `name` holds a real module (the plain containers fx made for the parameters' paths
    are replaced by the layer they belong to)."""
    try:
        module = gm.get_submodule(name)
    except AttributeError:
        return False
    return type(module) is not nn.Module


def _param(t: torch.Tensor | None) -> nn.Parameter | None:
    if t is None:
        return None
    return t if isinstance(t, nn.Parameter) else nn.Parameter(t, requires_grad=False)


def _conv(node: fx.Node, gm: fx.GraphModule) -> nn.Module | None:
    _, weight, bias, stride, padding, dilation, groups = [*node.args, *([None] * 7)][:7]
    w, b = _attr(gm, weight), _attr(gm, bias)
    if w is None or (bias is not None and b is None) or node.kwargs:
        return None
    cls = _CONVOLUTIONS[node.target]
    layer = cls(
        w.shape[1] * (groups or 1),
        w.shape[0],
        tuple(w.shape[2:]),
        stride=stride if stride is not None else 1,
        padding=padding if padding is not None else 0,
        dilation=dilation if dilation is not None else 1,
        groups=groups or 1,
        bias=b is not None,
    )
    layer.weight = _param(w)
    if b is not None:
        layer.bias = _param(b)
    return layer


def _linear(node: fx.Node, gm: fx.GraphModule) -> nn.Module | None:
    _, weight, *rest = node.args
    bias = rest[0] if rest else None
    w, b = _attr(gm, weight), _attr(gm, bias)
    if w is None or (bias is not None and b is None):
        return None
    layer = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    layer.weight = _param(w)
    if b is not None:
        layer.bias = _param(b)
    return layer


def _batchnorm(node: fx.Node, gm: fx.GraphModule) -> nn.Module | None:
    _, weight, bias, mean, var, _training, momentum, eps, *_ = node.args
    tensors = [_attr(gm, a) for a in (weight, bias, mean, var)]
    if tensors[2] is None or tensors[3] is None:
        return None
    val = node.meta.get("val")
    rank = val.dim() if isinstance(val, torch.Tensor) else 4
    layer = _BATCHNORMS.get(rank, nn.BatchNorm2d)(
        tensors[2].shape[0], eps=float(eps), momentum=float(momentum), affine=tensors[0] is not None
    )
    if tensors[0] is not None:
        layer.weight, layer.bias = _param(tensors[0]), _param(tensors[1])
    layer.running_mean, layer.running_var = tensors[2], tensors[3]
    return layer.eval()


def lower_export(gm: fx.GraphModule) -> fx.GraphModule:
    """A GraphModule of torch.nn layers and torch functions computing what the exported `gm`
    computes, sharing its tensors (the exported program is not modified)."""
    import copy
    import warnings

    with warnings.catch_warnings():  # torch's pytree specs warn about their own deprecations when copied
        warnings.simplefilter("ignore", FutureWarning)
        graph = copy.deepcopy(gm.graph)
    lowered = fx.GraphModule(gm, graph, type(gm).__name__)
    taken: set[str] = set()
    for node in list(graph.nodes):
        if node.op == "call_module" and not list(node.users) and str(node.target).startswith("_guards"):
            graph.erase_node(node)  # export's input guards: checks of shapes, no output
            continue
        if node.op != "call_function":
            continue
        layer = None
        if node.target in _CONVOLUTIONS:
            layer = _conv(node, lowered)
        elif node.target is aten.linear.default:
            layer = _linear(node, lowered)
        elif node.target is aten.batch_norm.default:
            layer = _batchnorm(node, lowered)
        if layer is not None:
            name = _layer_name(lowered, node.args[1] if node.args[1] is not None else node.args[3], taken)
            lowered.add_submodule(name, layer)
            with graph.inserting_before(node):
                call = graph.call_module(name, (node.args[0],))
            call.meta = dict(node.meta)
            node.replace_all_uses_with(call)
            graph.erase_node(node)
            continue
        if node.target is aten.hardtanh.default and tuple(node.args[1:3]) == (0.0, 6.0):
            node.target, node.args = F.relu6, (node.args[0],)
        elif node.target in FUNCTIONS:
            node.target = FUNCTIONS[node.target]
    for node in list(graph.nodes):
        if node.op == "get_attr" and not node.users:
            graph.erase_node(node)
    graph.lint()
    lowered.recompile()
    return lowered
