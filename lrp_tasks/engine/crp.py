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
    """``CRP(lrp_analyzer, layer, features)``: layer is a position in the analyzer's layers or a
    module name; concepts are the channels of that layer's output."""

    name = "CRP"

    def __init__(self, analyzer: LRP, layer: int | str, features: Features) -> None:
        from .graph import GraphLRP

        if isinstance(analyzer, GraphLRP):
            raise TypeError(
                "CRP needs a sequential analyzer (relevance is cut at a layer boundary); this model is "
                "analyzed on its torch.fx graph"
            )
        self.analyzer = analyzer
        names = analyzer.layer_names
        if isinstance(layer, str):
            if layer not in names:
                raise ValueError(f"CRP: no layer named {layer!r}; layers are {names}")
            layer = names.index(layer)
        if not -len(names) <= layer < len(names):
            raise ValueError(f"CRP: layer index {layer} out of range for {len(names)} layers")
        self.layer = layer % len(names)
        self.layer_name = names[self.layer]
        self.features = features

    def analyze(self, x: Tensor, selection: Selection = None, *, seed: SeedMode = "one-hot") -> Explanation:
        """val: (N, F, *input) one input map per concept; extras: features (N, F),
        concept_relevances (N, F) and all_concept_relevances (N, C) at the layer."""
        if isinstance(selection, TopK):
            raise TypeError("CRP explains one output per sample; use an int or per-sample selection")
        lrp = self.analyzer
        boundary = self.layer + 1
        with inference_mode(lrp.model):
            record = lrp.forward_record(x)
            logits = record.output
            index = resolve_selection(selection, logits)
            top = output_relevance(logits.detach(), index, seed)
            at_layer, _ = lrp.relevance_pass(record, top, stop=boundary)
            concepts = at_layer.flatten(start_dim=2).sum(dim=2) if at_layer.dim() > 2 else at_layer
            features = self.features.select(concepts)
            n_feat = features.shape[1]
            mask = torch.zeros((x.shape[0] * n_feat, concepts.shape[1]), dtype=x.dtype, device=x.device)
            mask[torch.arange(mask.shape[0], device=x.device), features.reshape(-1)] = 1
            mask = mask.reshape(*mask.shape, *([1] * (at_layer.dim() - 2)))
            masked = at_layer.repeat_interleave(n_feat, dim=0) * mask
            lower = lrp.forward_record(x.repeat_interleave(n_feat, dim=0), stop=boundary)
            val, _ = lrp.relevance_pass(lower, masked, start=boundary)
        return Explanation(
            val=val.detach().reshape(x.shape[0], n_feat, *x.shape[1:]),
            input=x,
            output=logits.detach(),
            output_selection=index,
            analyzer=self.name,
            extras={
                "layer": self.layer_name,
                "features": features,
                "concept_relevances": concepts.gather(1, features),
                "all_concept_relevances": concepts,
            },
        )

    __call__ = analyze
