"""Naive LRP rules written directly from the formulas of LRP-SPEC.md, in dense matrix form.

A Linear or Conv layer is turned into its dense matrix M (out × in) and bias vector b; every
rule is then the textbook sum R_i = Σ_j (contribution of i to z_j) / stab(z_j) · R_j computed
with explicit matrices, independent of the engine's VJP machinery."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def stab(z: Tensor, eps: float) -> Tensor:
    sign = torch.where(z >= 0, torch.ones_like(z), -torch.ones_like(z))
    return z + eps * sign


def dense(layer: nn.Module, in_shape: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """(M, b): the layer as y = M x + b on flattened single samples."""
    n_in = int(torch.tensor(in_shape).prod())
    eye = torch.eye(n_in, dtype=torch.float64).reshape(n_in, *in_shape)
    with torch.no_grad():
        zero = torch.zeros(1, *in_shape, dtype=torch.float64)
        b = layer(zero).reshape(-1)
        m = (layer(eye).reshape(n_in, -1) - b[None, :]).T
    return m, b


def pos(t: Tensor) -> Tensor:
    return t.clamp(min=0)


def neg(t: Tensor) -> Tensor:
    return t.clamp(max=0)


def generic(m: Tensor, b: Tensor, a: Tensor, r: Tensor, eps: float) -> Tensor:
    """R_i = Σ_j a_i m_ji r_j / stab(z_j), z = M a + b (one sample, flat)."""
    z = m @ a + b
    return (a[None, :] * m * (r / stab(z, eps))[:, None]).sum(0)


def zero(m, b, a, r, eps=1e-9):
    return generic(m, b, a, r, eps)


def gamma(m, b, a, r, g=0.25, eps=1e-9):
    return generic(m + g * pos(m), b + g * pos(b), a, r, eps)


def zplus(m, b, a, r, eps=1e-9):
    contrib = pos(m) * pos(a)[None, :] + neg(m) * neg(a)[None, :]
    z = contrib.sum(1) + pos(b)
    return (contrib * (r / stab(z, eps))[:, None]).sum(0)


def alphabeta(m, b, a, r, alpha=2.0, beta=1.0, eps=1e-9):
    cp = pos(m) * pos(a)[None, :] + neg(m) * neg(a)[None, :]
    cn = neg(m) * pos(a)[None, :] + pos(m) * neg(a)[None, :]
    zp = cp.sum(1) + pos(b)
    zn = cn.sum(1) + neg(b)
    return (alpha * cp * (r / stab(zp, eps))[:, None] - beta * cn * (r / stab(zn, eps))[:, None]).sum(0)


def generalized_gamma(m, b, a, r, g=0.25, eps=1e-9):
    rp, rn = m + g * pos(m), m + g * neg(m)
    cp = rp * pos(a)[None, :] + rn * neg(a)[None, :]
    cn = rn * pos(a)[None, :] + rp * neg(a)[None, :]
    zp = cp.sum(1) + b + g * pos(b)
    zn = cn.sum(1) + b + g * neg(b)
    z = m @ a + b
    rpos = torch.where(z > 0, r, torch.zeros_like(r))
    rneg = torch.where(z < 0, r, torch.zeros_like(r))
    return (cp * (rpos / stab(zp, eps))[:, None] + cn * (rneg / stab(zn, eps))[:, None]).sum(0)


def zbox(m, b, a, r, low, high, eps=1e-9):
    contrib = m * a[None, :] - pos(m) * low[None, :] - neg(m) * high[None, :]
    z = contrib.sum(1)
    return (contrib * (r / stab(z, eps))[:, None]).sum(0)


def wsquare(m, b, a, r, eps=1e-9):
    w2 = m**2
    z = w2.sum(1)
    return (w2 * (r / stab(z, eps))[:, None]).sum(0)


def flat(m, b, a, r, eps=1e-9):
    ones = (m != 0).to(m.dtype)
    z = ones.sum(1)
    return (ones * (r / stab(z, eps))[:, None]).sum(0)


def layernorm(a: Tensor, r: Tensor, eps=1e-9) -> Tensor:
    """z = C a with the centring matrix C = I − 11ᵀ/n; LRP-0 through it."""
    n = a.numel()
    c = torch.eye(n, dtype=a.dtype) - torch.full((n, n), 1.0 / n, dtype=a.dtype)
    z = c @ a
    return (a[None, :] * c * (r / stab(z, eps))[:, None]).sum(0)
