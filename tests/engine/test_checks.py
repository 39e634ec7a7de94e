"""Model checks: the per-layer table, the errors, and registration of custom layers/activations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrp_tasks.engine import (
    LRP,
    LRP_CONFIG,
    Composite,
    EpsilonPlus,
    GeneralizedGammaRule,
    GlobalTypeMap,
    LayerMap,
    ModelCheckError,
    RuleLayerMismatchError,
    SoftmaxOutputError,
    ZBoxRule,
    strip_softmax,
)

from .models import seed_cnn


class MyDoublingLayer(nn.Module):
    def forward(self, x):
        return 2 * x


def my_relu(x):
    return x.clamp(min=0)


class DenseWithActivation(nn.Linear):
    """A layer that carries its activation inside, as Flux's Dense(…, σ) does."""

    def __init__(self, n_in, n_out, activation):
        super().__init__(n_in, n_out)
        self.activation = activation

    def forward(self, x):
        return self.activation(super().forward(x))


def test_unknown_layer_gets_a_table_and_how_to_fix():
    model = nn.Sequential(nn.Linear(100, 20), MyDoublingLayer())
    with pytest.raises(ModelCheckError) as info:
        LRP(model)
    text = str(info.value)
    assert "0: Linear(in_features=100, out_features=20, bias=True)  => supported" in text
    assert "1: MyDoublingLayer()" in text and "=> unknown layer type" in text
    assert "LRP_CONFIG.supports_layer" in text and "skip_checks=True" in text
    assert "deep rectifier network" in text
    assert info.value.report[1][2] == "unknown layer type"


def test_unsupported_activations_are_named():
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2), nn.Sigmoid(), nn.Linear(2, 2))
    with pytest.raises(ModelCheckError) as info:
        LRP(model)
    assert "unsupported activation Tanh" in str(info.value)
    assert "unsupported activation Sigmoid" in str(info.value)


def test_final_softmax_refused_with_strip_softmax_hint():
    model = seed_cnn(softmax=True)
    with pytest.raises(SoftmaxOutputError, match="call strip_softmax"):
        LRP(model)
    stripped = strip_softmax(model)
    LRP(stripped, EpsilonPlus())
    assert isinstance(list(model.modules())[-1], nn.Softmax)  # user's model unchanged


def test_register_custom_layer_and_activation():
    model = nn.Sequential(nn.Linear(10, 5), MyDoublingLayer())
    dense = nn.Sequential(DenseWithActivation(10, 5, my_relu), nn.Linear(5, 2))
    with pytest.raises(ModelCheckError, match="unsupported activation my_relu"):
        LRP(dense)
    LRP_CONFIG.supports_layer(MyDoublingLayer)
    LRP_CONFIG.supports_activation(my_relu)
    try:
        analyzer = LRP(model)
        expl = analyzer(torch.randn(2, 10))
        assert expl.val.shape == (2, 10)
        LRP(dense)(torch.randn(2, 10))
    finally:
        LRP_CONFIG.unregister(MyDoublingLayer)
        LRP_CONFIG.unregister(my_relu)
    with pytest.raises(ModelCheckError):
        LRP(model)


def test_skip_checks():
    model = nn.Sequential(nn.Linear(10, 5), MyDoublingLayer())
    LRP(model, skip_checks=True)(torch.randn(1, 10))


def test_rule_on_incompatible_layer_refused_when_building():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2, 2))
    with pytest.raises(RuleLayerMismatchError, match=r"ZBoxRule.*layer 2 '2' \(MaxPool2d\)"):
        LRP(model, Composite(LayerMap(2, ZBoxRule(0.0, 1.0))))


def test_leaky_relu_needs_generalized_gamma_on_next_layer():
    model = nn.Sequential(nn.Linear(4, 4), nn.LeakyReLU(), nn.Linear(4, 2))
    with pytest.raises(ModelCheckError, match="GeneralizedGammaRule"):
        LRP(model)
    LRP(model, Composite(GlobalTypeMap({nn.Linear: GeneralizedGammaRule()})))(torch.randn(2, 4))
