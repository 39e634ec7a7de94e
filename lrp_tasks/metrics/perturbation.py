"""Region perturbation and pixel flipping (Samek et al. 2017), batched over samples, steps and orders.

The input is cut into a grid of ``patch_size`` × ``patch_size`` regions (all channels; a side that the
patch size does not divide is padded, half before and half after, as Quantus 0.6 does), the regions are
ranked by their summed relevance (most relevant first, ``morf``; least relevant first, ``lerf``; or a
seeded random order), and step k replaces the first k regions by a baseline. The curve is the explained
logit at steps 0..L (step 0 = the unperturbed input). Pixel flipping is the ``patch_size=1`` case.

Every perturbed input of every sample, step and order is built from one rank map with a comparison and a
``where``, and the model runs on blocks of ``batch_size`` perturbed inputs: there is no loop over samples
or steps around a forward pass. Ranks and random numbers depend only on the sample's relevance, input and
key, so a sample's curve does not depend on which batch it was computed in (up to the model's own
batch-size-dependent round-off)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .random import uniform

ORDERS = ("morf", "lerf", "random")
BASELINES = ("black", "mean", "uniform")

# Independent random streams of one seed.
_ORDER_STREAM = 1
_NOISE_STREAM = 2


def padding(size: int, patch_size: int) -> tuple[int, int]:
    """Padding (before, after) that makes ``size`` a multiple of ``patch_size`` (Quantus 0.6's split)."""
    missing = -size % patch_size
    return missing // 2, missing - missing // 2


def aopc(curves: torch.Tensor | np.ndarray) -> np.ndarray:
    """Area over the perturbation curve: mean over steps 0..L of f(x) − f(x_k), in float64.

    With the curve f(x_0), ..., f(x_L) this is f(x_0) − mean(curve) (Samek et al. 2017, eq. 12; the
    step-0 term is 0). Larger means the first perturbed regions mattered more to the model."""
    c = curves.detach().double().cpu().numpy() if isinstance(curves, torch.Tensor) else np.asarray(curves, np.float64)
    return (c[..., :1] - c).mean(axis=-1)


@dataclass(frozen=True)
class RegionPerturbation:
    """Relevance-ordered perturbation of ``steps`` regions of ``patch_size``² pixels, for each order.

    ``baseline``: ``black`` replaces a region by the sample's minimum (over all channels, as Quantus's
    "black"); ``mean`` by the sample's per-channel mean; ``uniform`` by noise drawn uniformly between the
    sample's minimum and maximum, per element, from ``seed`` (fixed per sample, so MoRF, LeRF and random
    see the same noise). ``seed`` also fixes the random order. ``batch_size``: perturbed inputs per
    forward pass."""

    patch_size: int = 8
    steps: int = 100
    orders: tuple[str, ...] = ORDERS
    baseline: str = "black"
    seed: int = 0
    batch_size: int = 1024

    def __post_init__(self) -> None:
        object.__setattr__(self, "orders", tuple(self.orders))
        problems = []
        if self.patch_size < 1:
            problems.append(f"patch_size must be >= 1, got {self.patch_size}")
        if self.steps < 1:
            problems.append(f"steps must be >= 1, got {self.steps}")
        if not self.orders or any(o not in ORDERS for o in self.orders) or len(set(self.orders)) != len(self.orders):
            problems.append(f"orders must be distinct values of {ORDERS}, got {self.orders}")
        if self.baseline not in BASELINES:
            problems.append(f"baseline must be one of {BASELINES}, got {self.baseline!r}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if problems:
            raise ValueError("invalid RegionPerturbation: " + "; ".join(problems))

    # -- geometry -----------------------------------------------------------------------------------
    def grid(self, sample_shape: Sequence[int]) -> tuple[int, int]:
        """Regions along height and width for inputs of ``sample_shape`` (C, H, W) or (H, W)."""
        if len(sample_shape) not in (2, 3):
            raise ValueError(
                f"region perturbation needs image inputs (C, H, W) or (H, W), got sample shape {tuple(sample_shape)}"
            )
        h, w = sample_shape[-2:]
        return math.ceil(h / self.patch_size), math.ceil(w / self.patch_size)

    def n_regions(self, sample_shape: Sequence[int]) -> int:
        gh, gw = self.grid(sample_shape)
        return gh * gw

    def check_fits(self, sample_shape: Sequence[int]) -> None:
        """Raise ValueError when the inputs have fewer regions than ``steps``."""
        regions = self.n_regions(sample_shape)
        if self.steps > regions:
            raise ValueError(
                f"steps={self.steps} exceeds the {regions} regions of {self.patch_size}×{self.patch_size} pixels "
                f"of inputs shaped {tuple(sample_shape)}"
            )

    # -- ranking ------------------------------------------------------------------------------------
    def region_scores(self, relevance: torch.Tensor) -> torch.Tensor:
        """Summed relevance of each region (all channels), ``(m, regions)`` in float64, row-major grid."""
        a = _as_nchw(relevance).double()
        m, c, h, w = a.shape
        p = self.patch_size
        (t, b), (left, right) = padding(h, p), padding(w, p)
        a = nn.functional.pad(a, (left, right, t, b))
        gh, gw = a.shape[2] // p, a.shape[3] // p
        return a.reshape(m, c, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5).reshape(m, gh * gw, c * p * p).sum(-1)

    def region_order(self, relevance: torch.Tensor, order: str, keys: np.ndarray | None = None) -> torch.Tensor:
        """Region indices in perturbation order, ``(m, regions)``; ties keep the lower region index first."""
        scores = self.region_scores(relevance)
        if order == "morf":
            return torch.sort(scores, dim=1, descending=True, stable=True).indices
        if order == "lerf":
            return torch.sort(scores, dim=1, stable=True).indices
        if order == "random":
            m, regions = scores.shape
            noise = uniform(self.seed, _keys(keys, m), regions, stream=_ORDER_STREAM)
            return torch.from_numpy(np.argsort(noise, axis=1, kind="stable")).to(scores.device)
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")

    def pixel_ranks(self, relevance: torch.Tensor, order: str, keys: np.ndarray | None = None) -> torch.Tensor:
        """Step at which each pixel is perturbed (1 = first), ``(m, 1, H, W)`` int32: step k replaces the
        pixels whose rank is <= k."""
        rel = _as_nchw(relevance)
        m, _, h, w = rel.shape
        perm = self.region_order(rel, order, keys)
        ranks = torch.empty_like(perm)
        ranks.scatter_(1, perm, torch.arange(1, perm.shape[1] + 1, device=perm.device).expand_as(perm))
        gh, gw = self.grid(rel.shape[1:])
        p = self.patch_size
        grid = ranks.reshape(m, 1, gh, 1, gw, 1).expand(m, 1, gh, p, gw, p).reshape(m, 1, gh * p, gw * p)
        (t, _), (left, _) = padding(h, p), padding(w, p)
        return grid[:, :, t : t + h, left : left + w].to(torch.int32).contiguous()

    # -- baseline -----------------------------------------------------------------------------------
    def baseline_values(self, x: torch.Tensor, keys: np.ndarray | None = None) -> torch.Tensor:
        """What replaces a perturbed pixel, broadcastable to ``x`` (NCHW)."""
        x = _as_nchw(x)
        m = x.shape[0]
        flat = x.reshape(m, -1)
        if self.baseline == "black":
            return flat.min(dim=1).values.reshape(m, 1, 1, 1)
        if self.baseline == "mean":
            return x.mean(dim=(2, 3), keepdim=True)
        lo, hi = flat.min(dim=1).values, flat.max(dim=1).values
        u = uniform(self.seed, _keys(keys, m), flat.shape[1], stream=_NOISE_STREAM)
        u = torch.from_numpy(u).to(device=x.device, dtype=x.dtype)
        return (lo[:, None] + u * (hi - lo)[:, None]).reshape(x.shape)

    # -- curves -------------------------------------------------------------------------------------
    @torch.inference_mode()
    def curves(
        self,
        model: nn.Module,
        x: torch.Tensor,
        relevance: torch.Tensor,
        target: torch.Tensor,
        keys: np.ndarray | Sequence[int] | None = None,
    ) -> dict[str, torch.Tensor]:
        """The explained logit at steps 0..steps, ``(m, steps + 1)`` per order, in ``x``'s dtype.

        ``x`` (m, C, H, W) or (m, H, W); ``relevance`` with x's shape (or one channel, broadcast);
        ``target`` (m,) the explained class of each row; ``keys`` (m,) integers that identify the
        explanations for the random order and noise (default 0..m-1: pass dataset indices so a sample
        gets the same numbers in any batch). ``model`` must be in eval mode and return logits."""
        squeeze = x.dim() == 3
        xs = _as_nchw(x)
        rel = _as_nchw(relevance)
        m = xs.shape[0]
        if rel.shape[0] != m or rel.shape[2:] != xs.shape[2:] or rel.shape[1] not in (1, xs.shape[1]):
            raise ValueError(f"relevance shape {tuple(relevance.shape)} does not fit inputs {tuple(x.shape)}")
        target = torch.as_tensor(target, device=xs.device).reshape(-1).long()
        if target.shape[0] != m:
            raise ValueError(f"target must have {m} entries, got {target.shape[0]}")
        self.check_fits(xs.shape[1:])
        key_arr = _keys(keys, m)
        ranks = torch.stack([self.pixel_ranks(rel, order, key_arr) for order in self.orders])  # (O, m, 1, H, W)
        base = self.baseline_values(xs, key_arr).expand_as(xs)
        steps = self.steps + 1
        per_order = m * steps
        total = len(self.orders) * per_order
        out = torch.empty(total, dtype=xs.dtype, device=xs.device)
        ranks_flat = ranks.reshape(len(self.orders) * m, 1, *xs.shape[2:])
        for lo in range(0, total, self.batch_size):
            idx = torch.arange(lo, min(lo + self.batch_size, total), device=xs.device)
            row = idx // steps  # (order, sample) pair
            sample = row % m
            k = (idx % steps).to(torch.int32).reshape(-1, 1, 1, 1)
            perturbed = torch.where(ranks_flat[row] <= k, base[sample], xs[sample])
            if squeeze:
                perturbed = perturbed[:, 0]
            logits = model(perturbed)
            out[lo : lo + len(idx)] = logits.gather(1, target[sample].reshape(-1, 1)).reshape(-1).to(xs.dtype)
        out = out.reshape(len(self.orders), m, steps)
        return {order: out[i] for i, order in enumerate(self.orders)}


def pixel_flipping(
    steps: int, orders: Sequence[str] = ORDERS, baseline: str = "black", seed: int = 0, batch_size: int = 1024
) -> RegionPerturbation:
    """Pixel flipping: region perturbation with 1×1 regions (a pixel's channels are replaced together)."""
    return RegionPerturbation(1, steps, tuple(orders), baseline, seed, batch_size)


def _as_nchw(t: torch.Tensor) -> torch.Tensor:
    if t.dim() == 3:
        return t.unsqueeze(1)
    if t.dim() != 4:
        raise ValueError(f"expected a batch of images (m, C, H, W) or (m, H, W), got shape {tuple(t.shape)}")
    return t


def _keys(keys: np.ndarray | Sequence[int] | None, m: int) -> np.ndarray:
    if keys is None:
        return np.arange(m, dtype=np.int64)
    arr = np.asarray(keys, dtype=np.int64).reshape(-1)
    if arr.shape[0] != m:
        raise ValueError(f"keys must have {m} entries, got {arr.shape[0]}")
    return arr
