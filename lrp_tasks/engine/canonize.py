"""Model preparation: strip_softmax, canonize (BatchNorm fusion), flatten_model.

LRP is not invariant to how a model is written: a BatchNorm after a convolution is an affine
map that rules like z⁺ would treat as a separate layer. Fusing it into the convolution gives the
same function and the explanation the rules were designed for. None of these functions modify
the model they are given."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from itertools import pairwise

import torch
from torch import nn

from .layers import BATCHNORM_TYPES, CONV_TRANSPOSE_TYPES, CONV_TYPES, SOFTMAX_TYPES


def named_leaf_layers(model: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    """Layers of nested ``nn.Sequential`` containers in execution order, with their full names."""
    if isinstance(model, nn.Sequential):
        for name, child in model._modules.items():  # keeps a layer listed twice
            yield from named_leaf_layers(child, f"{prefix}.{name}" if prefix else name)
    else:
        yield prefix, model


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


def strip_softmax(model: nn.Module) -> nn.Module:
    """The model without a final Softmax/LogSoftmax, so explanations are of logits.

    Returns new containers sharing the user's layers; the input model is not modified."""
    if not isinstance(model, nn.Sequential):
        from .graph import strip_softmax_graph, trace

        return strip_softmax_graph(trace(model))
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


def _fusable(layer: nn.Module, bn: nn.Module) -> bool:
    if not isinstance(bn, BATCHNORM_TYPES) or bn.running_mean is None:
        return False
    if isinstance(layer, (nn.Linear, *CONV_TYPES)):
        return layer.weight.shape[0] == bn.num_features
    if isinstance(layer, CONV_TRANSPOSE_TYPES):
        return layer.groups == 1 and layer.weight.shape[1] == bn.num_features
    return False


def canonize(model: nn.Module) -> nn.Module:
    """A copy of the model with every BatchNorm that directly follows a Linear/Conv fused into it.

    A BatchNorm after an activation stays (it gets PassRule). The nesting and module names of
    the model are kept; fused BatchNorms are removed. Residual/branching models are canonized
    on their traced graph (see ``lrp_tasks.engine.graph``)."""
    if not isinstance(model, nn.Sequential):
        from .graph import canonize_graph  # local import: the fx path is only needed here

        return canonize_graph(model)
    fused = copy.deepcopy(model)
    leaves = list(named_leaf_layers(fused))
    parents = _parents(fused)
    for (_, layer), (bn_name, bn) in pairwise(leaves):
        if _fusable(layer, bn) and bn_name in parents:
            fuse_batchnorm(layer, bn)
            parent, key = parents[bn_name]
            del parent._modules[key]
    return fused
