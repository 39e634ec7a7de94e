"""Model preparation: strip_softmax, canonize (BatchNorm fusion), flatten_model.

LRP is not invariant to how a model is written: a BatchNorm after a convolution is an affine
map that rules like z⁺ would treat as a separate layer. Fusing it into the convolution gives the
same function and the explanation the rules were designed for. None of these functions modify
the model they are given, and none copies what it does not change: the result shares every
layer and parameter of the user's model except the layers it fuses (those are new)."""

from __future__ import annotations

import copy
import warnings
from itertools import pairwise

import torch
import torch.fx as fx
from torch import nn

from .checks import LRP_CONFIG, LRPConfig, is_softmax_step
from .layers import BATCHNORM_TYPES, CONV_TRANSPOSE_TYPES, CONV_TYPES, SOFTMAX_TYPES
from .tracing import graph_plan, named_leaf_layers, trace

__all__ = [
    "canonize",
    "canonize_graph",
    "flatten_model",
    "fuse_batchnorm",
    "fused_copy",
    "named_leaf_layers",
    "strip_softmax",
]


def flatten_model(model: nn.Module) -> nn.Sequential:
    """One flat ``nn.Sequential`` of the leaf layers of nested Sequentials (layers are shared,
    not copied), so a single forward pass records every activation."""
    if not isinstance(model, nn.Sequential):
        return nn.Sequential(model)
    return nn.Sequential(*(layer for _, layer in named_leaf_layers(model)))


def _parents(model: nn.Module) -> dict[str, tuple[nn.Module, str]]:
    """Leaf name -> (parent Sequential, key in parent)."""
    out: dict[str, tuple[nn.Module, str]] = {}

    def walk(seq: nn.Module, prefix: str) -> None:
        for key, child in seq.named_children():
            name = f"{prefix}.{key}" if prefix else key
            if isinstance(child, nn.Sequential):
                walk(child, name)
            else:
                out[name] = (seq, key)

    if isinstance(model, nn.Sequential):
        walk(model, "")
    return out


def _copy_graph_module(gm: fx.GraphModule) -> fx.GraphModule:
    """A GraphModule with its own graph and containers, sharing the layers of `gm`."""
    with warnings.catch_warnings():  # torch's pytree specs warn about their own deprecations when copied
        warnings.simplefilter("ignore", FutureWarning)
        graph = copy.deepcopy(gm.graph)
    return fx.GraphModule(gm, graph, type(gm).__name__)


def strip_softmax(model: nn.Module, config: LRPConfig = LRP_CONFIG) -> nn.Module:
    """The model without a final Softmax/LogSoftmax, so explanations are of logits.

    Returns new containers sharing the user's layers; the input model is not modified."""
    if not isinstance(model, nn.Sequential):
        gm = trace(model, config)
        plan = graph_plan(gm, config)
        if not is_softmax_step(plan, plan.output):
            return model
        gm = _copy_graph_module(gm)
        out = next(n for n in gm.graph.nodes if n.op == "output")
        last = out.args[0]
        out.args = (last.args[0],)
        gm.graph.erase_node(last)
        gm.graph.lint()
        gm.recompile()
        return gm
    leaves = list(named_leaf_layers(model))
    if not leaves or not isinstance(leaves[-1][1], SOFTMAX_TYPES):
        return model
    stripped = _copy_containers(model)
    parent, key = _parents(stripped)[leaves[-1][0]]
    del parent._modules[key]
    return stripped


def _copy_containers(model: nn.Module) -> nn.Module:
    """Copies of the nested Sequentials, with the same leaf layer objects inside."""
    if not isinstance(model, nn.Sequential):
        return model
    clone = nn.Sequential()
    for key, child in model.named_children():
        clone.add_module(key, _copy_containers(child))
    return clone


def fuse_batchnorm(layer: nn.Module, bn: nn.Module) -> None:
    """Fold an eval-mode BatchNorm into the preceding Linear/Conv, in place on `layer`:
    W' = W·γ/√(var+eps), b' = (b − μ)·γ/√(var+eps) + β (BatchNorm's eps included: exact)."""
    with torch.no_grad():
        var = bn.running_var
        mean = bn.running_mean
        gamma = bn.weight if bn.affine else torch.ones_like(var)
        beta = bn.bias if bn.affine else torch.zeros_like(mean)
        scale = gamma / torch.sqrt(var + bn.eps)
        weight = layer.weight
        out_dim = 1 if isinstance(layer, CONV_TRANSPOSE_TYPES) else 0
        shape = [1] * weight.dim()
        shape[out_dim] = -1
        layer.weight.copy_(weight * scale.reshape(shape).to(weight.dtype))
        old_bias = layer.bias if layer.bias is not None else torch.zeros_like(mean)
        new_bias = ((old_bias - mean) * scale + beta).to(weight.dtype)
        if layer.bias is None:
            layer.bias = nn.Parameter(new_bias, requires_grad=weight.requires_grad)
        else:
            layer.bias.copy_(new_bias)


def fused_copy(layer: nn.Module, bn: nn.Module) -> nn.Module:
    """A new layer: `layer` with `bn` folded in (the user's layer is unchanged)."""
    fused = copy.deepcopy(layer)
    fuse_batchnorm(fused, bn)
    return fused


def _fusable(layer: nn.Module, bn: nn.Module) -> bool:
    if not isinstance(bn, BATCHNORM_TYPES) or bn.running_mean is None:
        return False
    if isinstance(layer, (nn.Linear, *CONV_TYPES)):
        return layer.weight.shape[0] == bn.num_features
    if isinstance(layer, CONV_TRANSPOSE_TYPES):
        return layer.groups == 1 and layer.weight.shape[1] == bn.num_features
    return False


def canonize(model: nn.Module, config: LRPConfig = LRP_CONFIG) -> nn.Module:
    """The model with every BatchNorm that directly follows a Linear/Conv fused into it.

    A BatchNorm after an activation stays (it gets PassRule). The nesting and module names of
    the model are kept; fused BatchNorms are removed. Only fused layers are new: everything else
    is the user's (when nothing is fused, the model itself is returned). Residual/branching
    models are canonized on their traced graph (a GraphModule)."""
    if not isinstance(model, nn.Sequential):
        return canonize_graph(model, config)
    leaves = list(named_leaf_layers(model))
    pairs = [(a, b) for a, b in pairwise(leaves) if _fusable(a[1], b[1])]
    if not pairs:
        return model
    fused = _copy_containers(model)
    parents = _parents(fused)
    for (layer_name, layer), (bn_name, bn) in pairs:
        if bn_name not in parents or layer_name not in parents:
            continue
        parent, key = parents[layer_name]
        parent._modules[key] = fused_copy(layer, bn)
        parent, key = parents[bn_name]
        del parent._modules[key]
    return fused


def canonize_graph(model: nn.Module, config: LRPConfig = LRP_CONFIG) -> nn.Module:
    """Fuse each BatchNorm into the Linear/Conv that produces its input, when that layer feeds
    only the BatchNorm and each is used once in the graph. Returns a GraphModule sharing every
    unfused layer (the model itself when nothing is fused)."""
    traced = trace(model, config)
    uses: dict[str, int] = {}
    for node in traced.graph.nodes:
        if node.op == "call_module":
            uses[node.target] = uses.get(node.target, 0) + 1

    def fusable(node: fx.Node) -> bool:
        if node.op != "call_module" or not node.args or not isinstance(node.args[0], fx.Node):
            return False
        producer = node.args[0]
        if producer.op != "call_module" or len(producer.users) != 1 or uses.get(producer.target) != 1:
            return False
        if uses.get(node.target) != 1:
            return False
        return _fusable(traced.get_submodule(producer.target), traced.get_submodule(node.target))

    if not any(fusable(n) for n in traced.graph.nodes):
        return model
    gm = _copy_graph_module(traced)
    for node in list(gm.graph.nodes):
        if not fusable(node):
            continue
        producer = node.args[0]
        layer, bn = gm.get_submodule(producer.target), gm.get_submodule(node.target)
        parent_name, _, attr = str(producer.target).rpartition(".")
        setattr(gm.get_submodule(parent_name) if parent_name else gm, attr, fused_copy(layer, bn))
        node.replace_all_uses_with(producer)
        gm.graph.erase_node(node)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm
