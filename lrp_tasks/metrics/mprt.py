"""Efficient MPRT (Hedström et al. 2023): does the explanation change when the model is randomised?

Instead of comparing explanations layer by layer (MPRT), eMPRT compares the complexity of explanations
of the trained model with that of a fully randomised copy: an explanation method that depends on what
the model learned gives much more complex (noisier) maps for a random model. Complexity is the discrete
entropy of the histogram of each map (``n_bins`` equal bins over the map's own range, as Quantus's
``discrete_entropy``), the score per sample the relative rise ``(H_random − H_trained) / H_trained``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn


def discrete_entropy(maps: torch.Tensor | np.ndarray, n_bins: int = 100) -> np.ndarray:
    """Entropy (nats) of the ``n_bins``-bin histogram of each row's values, ``(m,)`` float64.

    Bins as ``numpy.histogram(row, bins=n_bins)``: equal width between the row's minimum and maximum
    (the last bin closed), a constant row falls in one bin (entropy 0)."""
    a = maps.detach().cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps)
    a = a.reshape(a.shape[0], -1).astype(np.float64)
    m, d = a.shape
    lo, hi = a.min(axis=1), a.max(axis=1)
    flat = hi == lo
    lo = np.where(flat, lo - 0.5, lo)  # numpy.histogram's range for a constant array
    hi = np.where(flat, hi + 0.5, hi)
    edges = np.linspace(lo, hi, n_bins + 1, axis=1)  # (m, n_bins + 1), as numpy.histogram computes them
    idx = ((a - lo[:, None]) * (n_bins / (hi - lo))[:, None]).astype(np.intp)
    idx = np.clip(idx, 0, n_bins - 1)
    # numpy.histogram's corrections where the computed index and the edges disagree by round-off
    idx -= a < np.take_along_axis(edges, idx, axis=1)
    idx += (a >= np.take_along_axis(edges, idx + 1, axis=1)) & (idx != n_bins - 1)
    rows = np.arange(m)[:, None] * n_bins
    counts = np.bincount((rows + idx).reshape(-1), minlength=m * n_bins).reshape(m, n_bins)
    p = counts / d
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)


def randomize_parameters(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every module that has ``reset_parameters`` re-initialised (Quantus's
    fully randomised model). Seeded, and the global torch random state is left as it was."""
    randomized = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in randomized.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    return randomized.eval()


@dataclass(frozen=True)
class MPRTResult:
    """Per-sample complexities and scores of one eMPRT run, and their summary."""

    sample_index: np.ndarray
    complexity_trained: np.ndarray
    complexity_randomized: np.ndarray
    n_bins: int
    seed: int

    @property
    def scores(self) -> np.ndarray:
        """Relative rise of complexity, per sample (higher: the explanation depends more on the model)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return (self.complexity_randomized - self.complexity_trained) / self.complexity_trained

    def summary(self) -> dict[str, Any]:
        """JSON-able record (store attributes, report)."""
        scores = self.scores
        finite = scores[np.isfinite(scores)]
        return {
            "method": "efficient_mprt",
            "reference": "Hedström et al. 2023, Sanity Checks Revisited",
            "samples": len(self.sample_index),
            "n_bins": self.n_bins,
            "seed": self.seed,
            "score_mean": float(finite.mean()) if finite.size else None,
            "score_median": float(np.median(finite)) if finite.size else None,
            "share_complexity_rises": float((scores > 0).mean()) if scores.size else None,
            "complexity_trained_mean": float(self.complexity_trained.mean()),
            "complexity_randomized_mean": float(self.complexity_randomized.mean()),
            "sample_index": [int(i) for i in self.sample_index],
            "scores": [float(s) if np.isfinite(s) else None for s in scores],
        }


Explain = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
"""(model, x, target) -> relevance with x's shape."""


def efficient_mprt(
    explain: Explain,
    model: nn.Module,
    randomized: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    sample_index: np.ndarray | None = None,
    n_bins: int = 100,
    seed: int = 0,
) -> MPRTResult:
    """Explain ``x`` for ``target`` with the trained and the randomised model and compare complexities."""
    trained = explain(model, x, target)
    random_maps = explain(randomized, x, target)
    index = np.arange(len(x)) if sample_index is None else np.asarray(sample_index, np.int64)
    return MPRTResult(
        sample_index=index,
        complexity_trained=discrete_entropy(trained, n_bins),
        complexity_randomized=discrete_entropy(random_maps, n_bins),
        n_bins=n_bins,
        seed=seed,
    )
