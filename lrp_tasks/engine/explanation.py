"""The result of an analysis, in RelevancePropagation.jl's shape, batch-first."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor


@dataclass
class Explanation:
    """val: input-shaped relevance (N, ...) or (N, k, ...) for top-k; output: logits (N, C);
    output_selection: explained class per sample (N,) or (N, k); extras: e.g.
    ``layerwise_relevances`` (one tensor per layer boundary, input first, output last)."""

    val: Tensor
    input: Tensor
    output: Tensor
    output_selection: Tensor
    analyzer: str = "LRP"
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def layerwise_relevances(self) -> list[Tensor] | dict[str, Tensor] | None:
        """Sequential models: a list per layer boundary; graph models: a dict by node name."""
        return self.extras.get("layerwise_relevances")

    def relevance_sum(self) -> Tensor:
        """Total relevance per explanation: ≈ the seeded output relevance when LRP conserves."""
        dims_keep = self.output_selection.dim()
        return self.val.flatten(start_dim=dims_keep).sum(dim=-1)
