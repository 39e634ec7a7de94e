"""How relevance flows through the functional operations of a traced graph.

Each supported function or tensor method belongs to one family; the family says how relevance
at the operation's output is handed to its tensor inputs:

- ``add``/``sub``: split in proportion to each summand's contribution, with a stabilizer
  (zennit's Norm on its Sum layer); constants absorb their share like a bias.
- ``cat``: split by slice.
- ``reshape``: the same relevance, reshaped to the input.
- ``gradient``: the vector-Jacobian product (permutations, indexing, max pooling: exact
  relevance routing).
- ``lrp0``: LRP-0 through a linear map without parameters (average pooling, mean, sum).
- ``pass``: element-wise ReLU-like activations.
- ``ignore``: operations whose result is not a tensor that carries relevance (size, dim...).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

ADD, SUB, CAT, RESHAPE, GRADIENT, LRP0, PASS, IGNORE = (
    "add", "sub", "cat", "reshape", "gradient", "lrp0", "pass", "ignore",
)

FUNCTION_FAMILIES: dict[Callable[..., Any], str] = {
    operator.add: ADD,
    operator.iadd: ADD,
    torch.add: ADD,
    operator.sub: SUB,
    operator.isub: SUB,
    torch.sub: SUB,
    torch.cat: CAT,
    torch.concat: CAT,
    torch.flatten: RESHAPE,
    torch.reshape: RESHAPE,
    torch.squeeze: RESHAPE,
    torch.unsqueeze: RESHAPE,
    torch.permute: GRADIENT,
    torch.transpose: GRADIENT,
    operator.getitem: GRADIENT,
    F.relu: PASS,
    torch.relu: PASS,
    F.relu6: PASS,
    F.gelu: PASS,
    F.silu: PASS,
    F.mish: PASS,
    F.dropout: PASS,
    F.max_pool1d: GRADIENT,
    F.max_pool2d: GRADIENT,
    F.max_pool3d: GRADIENT,
    F.adaptive_max_pool1d: GRADIENT,
    F.adaptive_max_pool2d: GRADIENT,
    F.adaptive_max_pool3d: GRADIENT,
    F.avg_pool1d: LRP0,
    F.avg_pool2d: LRP0,
    F.avg_pool3d: LRP0,
    F.adaptive_avg_pool1d: LRP0,
    F.adaptive_avg_pool2d: LRP0,
    F.adaptive_avg_pool3d: LRP0,
    torch.mean: LRP0,
    torch.sum: LRP0,
    getattr: IGNORE,
}

METHOD_FAMILIES: dict[str, str] = {
    "add": ADD,
    "add_": ADD,
    "__add__": ADD,
    "sub": SUB,
    "view": RESHAPE,
    "reshape": RESHAPE,
    "flatten": RESHAPE,
    "squeeze": RESHAPE,
    "unsqueeze": RESHAPE,
    "contiguous": RESHAPE,
    "view_as": RESHAPE,
    "reshape_as": RESHAPE,
    "permute": GRADIENT,
    "transpose": GRADIENT,
    "t": GRADIENT,
    "relu": PASS,
    "relu_": PASS,
    "mean": LRP0,
    "sum": LRP0,
    "size": IGNORE,
    "dim": IGNORE,
}

# In-place forms are run out of place so recorded activations are never overwritten.
OUT_OF_PLACE: dict[Any, Any] = {operator.iadd: operator.add, operator.isub: operator.sub}
OUT_OF_PLACE_METHODS = {"add_": "add", "relu_": "relu"}

NONNEGATIVE_FAMILIES = {PASS}


def family_of(op: str, target: Any) -> str | None:
    """Family of a call_function target or call_method name; None when unsupported."""
    if op == "call_method":
        return METHOD_FAMILIES.get(target)
    return FUNCTION_FAMILIES.get(target)


def describe(op: str, target: Any) -> str:
    if op == "call_method":
        return f"Tensor.{target}"
    module = getattr(target, "__module__", "") or ""
    name = getattr(target, "__name__", repr(target))
    return f"{module}.{name}" if module and module != "builtins" else name
