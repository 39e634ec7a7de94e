"""Which output neuron to explain, per sample, and the output relevance to start from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

SeedMode = Literal["one-hot", "logit"]


@dataclass(frozen=True)
class TopK:
    """Explain the k highest logits of every sample (k explanations per sample)."""

    k: int

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"TopK needs k >= 1, got {self.k}")


Selection = None | int | Sequence[int] | Tensor | TopK


def resolve_selection(selection: Selection, logits: Tensor) -> Tensor:
    """Class index per row of `logits` (N, C) as a long tensor (N,)."""
    n, c = logits.shape
    if selection is None:
        return logits.argmax(dim=1)
    if isinstance(selection, TopK):
        raise TypeError("TopK is expanded by analyze(); resolve_selection takes per-row classes")
    if isinstance(selection, int):
        idx = torch.full((n,), selection, dtype=torch.long, device=logits.device)
    else:
        idx = torch.as_tensor(selection, dtype=torch.long, device=logits.device).reshape(-1)
        if idx.numel() != n:
            raise ValueError(f"selection has {idx.numel()} entries for a batch of {n} samples")
    bad = (idx < 0) | (idx >= c)
    if bool(bad.any()):
        raise ValueError(f"selected output index {idx[bad][0].item()} out of range for {c} outputs")
    return idx


def output_relevance(logits: Tensor, index: Tensor, seed: SeedMode) -> Tensor:
    """One-hot 1 at the selected output (relevances sum to ≈1) or the selected logit's value."""
    if seed not in ("one-hot", "logit"):
        raise ValueError(f"seed must be 'one-hot' or 'logit', got {seed!r}")
    relevance = torch.zeros_like(logits)
    rows = torch.arange(logits.shape[0], device=logits.device)
    value = logits[rows, index] if seed == "logit" else torch.ones_like(logits[:, 0])
    relevance[rows, index] = value
    return relevance
