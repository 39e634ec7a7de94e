"""Concept Relevance Propagation: explanations conditioned on one concept (a channel of a chosen
layer, a neuron for dense layers). The relevance is propagated down to the layer as usual, then
restricted to one concept at a time and propagated to the input, giving one map per concept."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .analyzer import LRP, inference_mode
from .explanation import Explanation
from .selection import SeedMode, Selection, TopK, output_relevance, resolve_selection


@dataclass(frozen=True)
class TopNFeatures:
    """The n concepts with the highest signed relevance (summed over space), per sample."""

    n: int

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"TopNFeatures needs n >= 1, got {self.n}")

    def select(self, concept_relevance: Tensor) -> Tensor:
        n = min(self.n, concept_relevance.shape[1])
        return concept_relevance.topk(n, dim=1).indices


class IndexedFeatures:
    """Fixed concepts (channel indices), the same for every sample."""

    def __init__(self, *indices: int) -> None:
        if not indices:
            raise ValueError("IndexedFeatures needs at least one index")
        self.indices = tuple(int(i) for i in indices)

    def select(self, concept_relevance: Tensor) -> Tensor:
        n, c = concept_relevance.shape
        bad = [i for i in self.indices if not 0 <= i < c]
        if bad:
            raise ValueError(f"feature indices {bad} out of range for a layer with {c} channels")
        idx = torch.tensor(self.indices, dtype=torch.long, device=concept_relevance.device)
        return idx.expand(n, -1)

    def __repr__(self) -> str:
        return f"IndexedFeatures{self.indices}"


Features = TopNFeatures | IndexedFeatures


class CRP:
    """``CRP(lrp_analyzer, layer, features)``: concepts are the channels of `layer`'s output (a
    neuron for dense layers). `layer` is a layer position, a layer or step name as
    ``print(analyzer)`` shows it, or a container (``layer2``: the output of its last step).

    Relevance is propagated from the output down to the layer, masked per concept, and on to the
    input in one batched pass. In a graph, relevance that flows around the layer (a skip
    connection that starts below it and joins above it) belongs to no concept: it is propagated
    alongside and returned as ``extras["bypass"]``, so that the concept maps of all channels plus
    the bypass map equal the LRP map (the bypass is zero at a layer every path goes through, such
    as a ResNet stage's output or any layer of a sequential model)."""

    name = "CRP"

    def __init__(self, analyzer: LRP, layer: int | str, features: Features) -> None:
        self.analyzer = analyzer
        try:
            self.step = analyzer.step_of(layer)
        except ValueError as exc:
            raise ValueError(f"CRP: {exc}") from None
        self.layer = analyzer._layer_steps.index(self.step) if self.step in analyzer._layer_steps else None
        self.layer_name = layer if isinstance(layer, str) else analyzer.plan.steps[self.step].name
        self.features = features

    def analyze(self, x: Tensor, selection: Selection = None, *, seed: SeedMode = "one-hot") -> Explanation:
        """val: (N, F, *input) one input map per concept; extras: features (N, F),
        concept_relevances (N, F) and all_concept_relevances (N, C) at the layer, and bypass
        (N, *input): the relevance that reaches the input around the layer."""
        if isinstance(selection, TopK):
            raise TypeError("CRP explains one output per sample; use an int or per-sample selection")
        lrp, v = self.analyzer, self.step
        with inference_mode(lrp.model):
            record = lrp.forward_record(x)
            logits = record.output
            index = resolve_selection(selection, logits)
            top = output_relevance(logits.detach(), index, seed)
            pending = lrp.propagate(record, {lrp.plan.output: top}, until=v)
            del record
            at_layer = pending.pop(v)
            concepts = at_layer.flatten(start_dim=2).sum(dim=2) if at_layer.dim() > 2 else at_layer
            features = self.features.select(concepts)
            n_feat = features.shape[1]
            rows = n_feat + (1 if pending else 0)  # one row per concept, plus the bypass
            n = x.shape[0]
            mask = torch.zeros((n, rows, concepts.shape[1]), dtype=at_layer.dtype, device=x.device)
            mask[:, :n_feat].scatter_(2, features.unsqueeze(2), 1)
            mask = mask.reshape(n * rows, -1, *([1] * (at_layer.dim() - 2)))
            lower_pending = {v: at_layer.repeat_interleave(rows, dim=0) * mask}
            if pending:
                bypass_row = torch.zeros(rows, dtype=at_layer.dtype, device=x.device)
                bypass_row[-1] = 1
                for j, r in pending.items():
                    scale = bypass_row.repeat(n).reshape(-1, *([1] * (r.dim() - 1)))
                    lower_pending[j] = r.repeat_interleave(rows, dim=0) * scale
            lower = lrp.forward_record(x.repeat_interleave(rows, dim=0), stop=v)
            val = lrp.propagate(lower, lower_pending, until=0)[0]
        val = val.detach().reshape(n, rows, *x.shape[1:])
        bypass = val[:, n_feat] if pending else torch.zeros_like(x)
        return Explanation(
            val=val[:, :n_feat],
            input=x,
            output=logits.detach(),
            output_selection=index,
            analyzer=self.name,
            extras={
                "layer": self.layer_name,
                "features": features,
                "concept_relevances": concepts.gather(1, features),
                "all_concept_relevances": concepts,
                "bypass": bypass,
            },
        )

    __call__ = analyze
