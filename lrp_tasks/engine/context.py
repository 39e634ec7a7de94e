"""What a rule sees of one layer during the relevance pass.

A rule reads the layer's recorded input/output and asks the context for forward passes with
modified parameters and for input vector-Jacobian products. The context computes those the
cheapest way it knows (direct convolution-backward kernels for Linear/Conv, autograd otherwise)
and caches modified parameters between calls, so rules stay a few lines long."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .layers import CONV_TRANSPOSE_TYPES, CONV_TYPES, forward_with_params


@dataclass
class LayerContext:
    """One layer of one analysis: module, recorded activations and a per-layer parameter cache."""

    layer: nn.Module
    input: Tensor
    output: Tensor
    input_nonnegative: bool = False
    name: str = ""
    index: int = 0
    memo: dict[str, Any] = field(default_factory=dict)
    # Set when the forward pass was recorded with autograd (input is then a leaf).
    graph_output: Tensor | None = None
    #: the layer's output is non-negative by construction (ReLU, pooling of non-negatives...)
    output_nonnegative: bool = False

    # -- parameters -------------------------------------------------------------------------
    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """Memoise `compute()` for this layer until its parameters change (version counters)."""
        stamp = tuple((p.data_ptr(), p._version) for p in self.layer.parameters(recurse=False))
        hit = self.memo.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        value = compute()
        self.memo[key] = (stamp, value)
        return value

    @property
    def weight(self) -> Tensor:
        return self.layer.weight.detach()

    @property
    def bias(self) -> Tensor | None:
        bias = getattr(self.layer, "bias", None)
        return None if bias is None else bias.detach()

    # -- computations -----------------------------------------------------------------------
    def forward(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """The layer applied to `x` with substituted parameters, without autograd."""
        with torch.no_grad():
            return forward_with_params(self.layer, x, weight, bias)

    def vjp(self, weight: Tensor | None, grad_output: Tensor, at: Tensor | None = None) -> Tensor:
        """Input gradient of `layer(·; weight)` contracted with `grad_output`.

        Weighted layers are linear in their input, so the point `at` only matters for the
        autograd fallback; `weight=None` means the layer's own forward at its recorded input."""
        if weight is not None:
            point = at if at is not None and at.shape == self.input.shape else self.input
            direct = _direct_input_vjp(self.layer, point.detach(), weight, grad_output)
            if direct is not None:
                return direct
            leaf = (at if at is not None else self.input).detach().requires_grad_(True)
            with torch.enable_grad():
                out = forward_with_params(self.layer, leaf, weight, None)
                (grad,) = torch.autograd.grad(out, leaf, grad_output)
            return grad
        if self.graph_output is None:
            raise RuntimeError(
                f"layer {self.index} ({type(self.layer).__name__}) was not recorded with autograd"
            )
        (grad,) = torch.autograd.grad(self.graph_output, self.input, grad_output)
        return grad


def _direct_input_vjp(layer: nn.Module, point: Tensor, weight: Tensor, grad_output: Tensor) -> Tensor | None:
    """Closed-form input gradient for Linear and zero-padded (transposed) convolutions.

    The gradient does not depend on `point` (the layer is linear in its input); oneDNN only uses
    its shape and memory layout, and a real tensor picks a faster kernel than an expanded dummy."""
    if isinstance(layer, nn.Linear):
        return grad_output.matmul(weight)
    is_conv = isinstance(layer, CONV_TYPES)
    is_transposed = isinstance(layer, CONV_TRANSPOSE_TYPES)
    if not (is_conv or is_transposed):
        return None
    if getattr(layer, "padding_mode", "zeros") != "zeros" or isinstance(layer.padding, str):
        return None
    dims = weight.dim() - 2
    output_padding = list(layer.output_padding) if is_transposed else [0] * dims
    grad_input, _, _ = torch.ops.aten.convolution_backward(
        grad_output,
        point,
        weight,
        None,
        list(layer.stride),
        list(layer.padding),
        list(layer.dilation),
        is_transposed,
        output_padding,
        layer.groups,
        [True, False, False],
    )
    return grad_input


def needs_autograd_record(layer: nn.Module) -> bool:
    """Whether the plain layer's VJP can only come from an autograd graph of its forward."""
    if isinstance(layer, nn.Linear):
        return False
    if isinstance(layer, CONV_TYPES + CONV_TRANSPOSE_TYPES):
        return getattr(layer, "padding_mode", "zeros") != "zeros" or isinstance(layer.padding, str)
    return True
