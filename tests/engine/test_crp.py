"""CRP: concept-conditional maps add up to the plain LRP map and match a hand-masked pass."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrp_tasks.engine import CRP, LRP, EpsilonPlus, IndexedFeatures, TopNFeatures, canonize

from .models import relu_cnn, seed_cnn


def test_all_concepts_sum_to_the_lrp_map():
    torch.manual_seed(0)
    model = relu_cnn().double()
    analyzer = LRP(model, EpsilonPlus())
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    crp = CRP(analyzer, 3, IndexedFeatures(*range(6)))  # the second conv has 6 channels
    expl = crp(x)
    assert expl.val.shape == (3, 6, 1, 8, 8)
    torch.testing.assert_close(expl.val.sum(dim=1), analyzer(x).val)
    # without biases (nothing absorbs relevance) a concept's input map carries exactly the
    # relevance the concept had at its layer
    bias_free = CRP(LRP(relu_cnn(bias=False).double(), EpsilonPlus()), 3, IndexedFeatures(*range(6)))(x)
    torch.testing.assert_close(bias_free.val.flatten(2).sum(2), bias_free.extras["concept_relevances"])


def test_top_n_features_ranked_by_signed_relevance():
    torch.manual_seed(1)
    analyzer = LRP(canonize(seed_cnn()), EpsilonPlus())
    x = torch.randn(2, 3, 32, 32)
    expl = CRP(analyzer, "0.8", TopNFeatures(3))(x)
    allc = expl.extras["all_concept_relevances"]
    assert expl.extras["features"].shape == (2, 3)
    torch.testing.assert_close(expl.extras["concept_relevances"], allc.topk(3, dim=1).values)
    assert expl.extras["layer"] == "0.8"


def test_dense_layer_concepts_are_neurons_and_bad_arguments_refused():
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)).eval()
    analyzer = LRP(model)
    expl = CRP(analyzer, 0, IndexedFeatures(1, 2))(torch.randn(2, 5))
    assert expl.val.shape == (2, 2, 5)
    with pytest.raises(ValueError, match="out of range"):
        CRP(analyzer, 0, IndexedFeatures(9))(torch.randn(2, 5))
    with pytest.raises(ValueError, match="no layer named"):
        CRP(analyzer, "nope", TopNFeatures(1))
