"""Attention lowered onto steps the rules know, while a model is traced (``tracing.py``).

``nn.MultiheadAttention``, ``nn.TransformerEncoderLayer``, ``nn.TransformerEncoder`` and
``F.scaled_dot_product_attention`` are not single layers for LRP: AttnLRP gives the products
q·kᵀ and attn·v, the softmax and the projections their own rules. The tracer therefore records,
in place of the call, the same computation as separate operations: in-projection (one
:class:`InProjection` layer per q, k, v, reading the attention's own parameters), q·kᵀ
(``torch.matmul``), the scale, the mask (an addition of a constant), ``softmax``, ·v, and the
attention's ``out_proj`` layer. Nothing of the user's model is modified and no class is
patched: the lowering is a function the tracer calls instead of the module's ``forward``.

Dropout inside attention is left out (an analysis runs in eval mode). Not lowered (the trace
says so): ``add_bias_kv``, ``add_zero_attn``, grouped-query sdpa (``enable_gqa``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn


class AttentionLoweringError(TypeError):
    """An attention module uses an option the lowering does not support."""


class InProjection(nn.Linear):
    """The q, k or v part of a ``MultiheadAttention``'s in-projection as a Linear layer.

    It reads the attention's parameters at every call (a slice of ``in_proj_weight``, or
    ``q_proj_weight``...), so nothing is copied and the user's module stays as it is; rules see
    an ``nn.Linear``."""

    PARTS = ("q", "k", "v")

    def __init__(self, attention: nn.MultiheadAttention, part: str) -> None:
        nn.Module.__init__(self)
        if part not in self.PARTS:
            raise ValueError(f"part must be one of {self.PARTS}, got {part!r}")
        self._source = [attention]  # a list: not registered as a child module
        self.part = part
        self.out_features = attention.embed_dim
        self.in_features = {"q": attention.embed_dim, "k": attention.kdim, "v": attention.vdim}[part]

    @property
    def _slice(self) -> slice:
        i, e = self.PARTS.index(self.part), self._source[0].embed_dim
        return slice(i * e, (i + 1) * e)

    @property  # type: ignore[override]
    def weight(self) -> Tensor:
        a = self._source[0]
        if a._qkv_same_embed_dim:
            return a.in_proj_weight.detach()[self._slice]
        return getattr(a, f"{self.part}_proj_weight").detach()

    @property  # type: ignore[override]
    def bias(self) -> Tensor | None:
        b = self._source[0].in_proj_bias
        return None if b is None else b.detach()[self._slice]

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]:
        """The attention's parameters this part reads (rules' caches watch their versions)."""
        a = self._source[0]
        names = ["in_proj_weight"] if a._qkv_same_embed_dim else [f"{self.part}_proj_weight"]
        for name in [*names, "in_proj_bias"]:
            p = getattr(a, name, None)
            if p is not None:
                yield p

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        bias = self.bias is not None
        return f"{self.part}: in_features={self.in_features}, out_features={self.out_features}, bias={bias}"


def additive_mask(mask: Tensor | None, is_causal: bool, like: Tensor, key: Tensor) -> Tensor:
    """One float mask added to the attention scores: 0 where a query attends, −inf where not.
    ``mask`` is as ``scaled_dot_product_attention`` takes it (bool: True attends; float: added).
    Replayed at every call, carries no relevance (its family is Ignored)."""
    dtype = like.dtype
    out = torch.zeros((), dtype=dtype, device=like.device)
    if mask is not None:
        out = _float_mask(~mask, dtype) if mask.dtype == torch.bool else mask.to(dtype)
    if is_causal:
        causal = torch.ones(like.size(-2), key.size(-2), dtype=torch.bool, device=like.device).tril()
        out = out + _float_mask(~causal, dtype)
    return out


def mha_mask(
    attn_mask: Tensor | None, key_padding_mask: Tensor | None, is_causal: bool, q: Tensor, k: Tensor, heads: int
) -> Tensor:
    """``nn.MultiheadAttention``'s masks (bool: True = do NOT attend; float: added) as one float mask
    broadcastable to the (N, heads, L, S) scores. Carries no relevance."""
    n, length, s = q.size(0), q.size(-2), k.size(-2)
    out = torch.zeros((), dtype=q.dtype, device=q.device)
    if attn_mask is not None:
        m = _float_mask(attn_mask, q.dtype)
        out = out + (m.reshape(n, heads, length, s) if m.dim() == 3 else m)
    if key_padding_mask is not None:
        out = out + _float_mask(key_padding_mask, q.dtype).reshape(n, 1, 1, s)
    if is_causal and attn_mask is None:
        causal = torch.ones(length, s, dtype=torch.bool, device=q.device).triu(1)
        out = out + _float_mask(causal, q.dtype)
    return out


def _float_mask(mask: Tensor, dtype: torch.dtype) -> Tensor:
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    return mask.to(dtype)


#: functions the lowering records whose values carry no relevance (masks)
MASK_FUNCTIONS = (additive_mask, mha_mask)


def _attention_core(tracer: fx.Tracer, q: Any, k: Any, v: Any, mask: Any, scale: Any) -> tuple[Any, Any]:
    """softmax(q·kᵀ · scale + mask) · v as separate operations; returns (output, probabilities)."""
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale
    if mask is not None:
        scores = scores + mask
    probs = torch.softmax(scores, dim=-1)
    return torch.matmul(probs, v), probs


def lower_sdpa(tracer: fx.Tracer, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``F.scaled_dot_product_attention`` (timm, Hugging Face) as q·kᵀ → scale → mask → softmax → ·v."""
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale")
    bound = dict(zip(names, args, strict=False)) | kwargs
    if bound.get("enable_gqa"):
        raise AttentionLoweringError("scaled_dot_product_attention with enable_gqa=True is not lowered yet")
    q, k, v = bound["query"], bound["key"], bound["value"]
    scale = bound.get("scale")
    if scale is None:
        scale = q.size(-1) ** -0.5
    mask = None
    if bound.get("attn_mask") is not None or bound.get("is_causal"):
        mask = tracer.create_proxy(
            "call_function", additive_mask, (bound.get("attn_mask"), bool(bound.get("is_causal")), q, k), {}
        )
    out, _ = _attention_core(tracer, q, k, v, mask, scale)
    return out


def lower_mha(
    tracer: fx.Tracer,
    m: nn.MultiheadAttention,
    path: str,
    query: Any,
    key: Any,
    value: Any,
    key_padding_mask: Any = None,
    need_weights: bool = True,
    attn_mask: Any = None,
    average_attn_weights: bool = True,
    is_causal: bool = False,
) -> tuple[Any, Any]:
    """``nn.MultiheadAttention.forward`` as steps: q/k/v in-projections, per-head attention,
    ``out_proj``. Returns (output, averaged or per-head weights, or None) as the module does."""
    if m.bias_k is not None or m.add_zero_attn:
        raise AttentionLoweringError(
            f"{path}: MultiheadAttention with add_bias_kv or add_zero_attn is not lowered yet"
        )
    if not m.batch_first:
        query, key, value = (t.transpose(0, 1) for t in (query, key, value))
    projections = []
    for part, x in zip(InProjection.PARTS, (query, key, value), strict=True):
        target = f"{path}.in_proj_{part}" if path else f"in_proj_{part}"
        tracer.extra_modules[target] = InProjection(m, part)
        projections.append(tracer.create_proxy("call_module", target, (x,), {}))
    q, k, v = projections
    h, d = m.num_heads, m.head_dim
    n, length = q.size(0), q.size(1)
    q, k, v = (t.reshape(n, t.size(1), h, d).transpose(1, 2) for t in (q, k, v))
    mask = None
    if attn_mask is not None or key_padding_mask is not None or is_causal:
        mask = tracer.create_proxy("call_function", mha_mask, (attn_mask, key_padding_mask, is_causal, q, k, h), {})
    out, probs = _attention_core(tracer, q, k, v, mask, d**-0.5)
    out = out.transpose(1, 2).reshape(n, length, m.embed_dim)
    out = m.out_proj(out)
    if not m.batch_first:
        out = out.transpose(0, 1)
    weights = None
    if need_weights:
        weights = probs.mean(dim=1) if average_attn_weights else probs
    return out, weights


def lower_encoder_layer(
    tracer: fx.Tracer,
    m: nn.TransformerEncoderLayer,
    path: str,
    src: Any,
    src_mask: Any = None,
    src_key_padding_mask: Any = None,
    is_causal: bool = False,
) -> Any:
    """``nn.TransformerEncoderLayer.forward`` without its fast-path checks (Python control flow on
    tensor properties that fx cannot trace); the blocks are the layer's own ``_sa_block`` and
    ``_ff_block``."""
    x = src
    if m.norm_first:
        x = x + m._sa_block(m.norm1(x), src_mask, src_key_padding_mask, is_causal=is_causal)
        return x + m._ff_block(m.norm2(x))
    x = m.norm1(x + m._sa_block(x, src_mask, src_key_padding_mask, is_causal=is_causal))
    return m.norm2(x + m._ff_block(x))


def lower_encoder(
    tracer: fx.Tracer,
    m: nn.TransformerEncoder,
    path: str,
    src: Any,
    mask: Any = None,
    src_key_padding_mask: Any = None,
    is_causal: bool | None = None,
) -> Any:
    """``nn.TransformerEncoder.forward``: its layers in turn, then its norm."""
    out = src
    for layer in m.layers:
        out = layer(out, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=bool(is_causal))
    return m.norm(out) if m.norm is not None else out


LOWERINGS: dict[type[nn.Module], Callable[..., Any]] = {
    nn.MultiheadAttention: lower_mha,
    nn.TransformerEncoderLayer: lower_encoder_layer,
    nn.TransformerEncoder: lower_encoder,
}
"""Module classes the tracer records as the steps of a lowering function instead of one call."""


def lowering_of(module: nn.Module) -> Callable[..., Any] | None:
    for cls, lowering in LOWERINGS.items():
        if type(module) is cls:  # a subclass may change forward(): traced as written
            return lowering
    return None
