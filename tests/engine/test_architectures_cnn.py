"""Issue 21: the modern CNNs people audit — ConvNeXt (LayerNorm over channels with permutes,
depthwise 7×7 convolutions, GELU, layer scale), EfficientNet-B0 (SiLU, squeeze-and-excitation with a
sigmoid gate) and MobileNetV3 (Hardswish, hard-sigmoid gates) — built in-repo with torchvision's module
structure at a reduced size, random weights and BatchNorm statistics from train-mode passes, are
explained by every preset, conserve relevance with zero-bias rules, and name each step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from lrp_tasks import engine
from lrp_tasks.engine import LRP, Composite, GateRule, GlobalTypeMap, LayerNormRule, Mul, ZeroRule
from lrp_tasks.models.convnext import build_convnext
from lrp_tasks.models.efficientnet import build_efficientnet_b0, build_mobilenet_v3_small
from tests.reference_venv import needs_venv, run_json_lines

DT = torch.float64
BUILDERS = {"convnext": build_convnext, "efficientnet_b0": build_efficientnet_b0,
            "mobilenet_v3_small": build_mobilenet_v3_small}


def _model(name: str) -> nn.Module:
    """Random weights; BatchNorm running statistics from a few train-mode passes."""
    torch.manual_seed(0)
    model = BUILDERS[name]().to(DT)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, 64, 64, dtype=DT))
    return model.eval()


def _x() -> torch.Tensor:
    return torch.randn(3, 3, 64, 64, dtype=DT, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(
    ("name", "preset"),
    [(n, p) for n in BUILDERS for p in ("EpsilonPlusFlat", "EpsilonAlpha2Beta1", "EpsilonGammaBox")]
    + [("convnext", "AttnLRP")],  # AttnLRP's ε on every convolution is for transformers, not BatchNorm CNNs
)
def test_every_preset_explains_the_architecture(name: str, preset: str) -> None:
    model = _model(name)
    kwargs = {"low": -5.0, "high": 5.0} if preset == "EpsilonGammaBox" else {}
    expl = LRP(model, getattr(engine, preset)(**kwargs), conservation_tolerance=None)(_x())
    assert expl.val.shape == (3, 3, 64, 64) and torch.isfinite(expl.val).all() and expl.val.abs().sum() > 0


def _without_biases(model: nn.Module) -> nn.Module:
    """The zero-bias variant: every bias and BatchNorm shift 0 (BatchNorm a pure per-channel scale)."""
    with torch.no_grad():
        for module in model.modules():
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.zero_()
    return model


@pytest.mark.parametrize("name", BUILDERS)
def test_the_zero_bias_variant_conserves_relevance(name: str) -> None:
    model = _without_biases(_model(name))
    composite = Composite(GlobalTypeMap({
        (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.AdaptiveAvgPool2d, nn.Dropout, engine.Add): ZeroRule(
            stabilizer=1e-30
        ),
        nn.LayerNorm: LayerNormRule(stabilizer=1e-30),
        Mul: GateRule(epsilon=1e-30),
    }))  # tiny stabilizers: activations of these random networks shrink to ~1e-9 in the last stages
    expl = LRP(model, composite, conservation_tolerance=None)(_x())
    torch.testing.assert_close(expl.val.sum((1, 2, 3)), torch.ones(3, dtype=DT), rtol=1e-6, atol=1e-6)


def test_the_plan_names_the_steps_of_each_block() -> None:
    text = repr(LRP(_model("convnext"), engine.EpsilonPlusFlat()))
    assert "features.1.0.block.0: Conv2d" in text and "groups=8" in text  # depthwise 7×7
    assert "F.layer_norm" in text and "LayerNormRule" in text  # LayerNorm2d: permute, layer_norm, permute
    assert "features.1.0.block.4: GELU" in text and "PassRule" in text
    assert "torch.permute" in text  # the Permute modules
    for name, gate in (("efficientnet_b0", "Sigmoid"), ("mobilenet_v3_small", "Hardsigmoid")):
        analyzer = LRP(_model(name), engine.EpsilonPlusFlat())
        products = [s for s in analyzer.plan.steps if isinstance(s.module, Mul)]
        assert products and all(s.module.gate_inputs == {0} for s in products)
        text = repr(analyzer)
        assert f"scale_activation: {gate}()" in text and "GateRule" in text
    assert "Hardswish()" in repr(LRP(_model("mobilenet_v3_small"), engine.EpsilonPlusFlat()))


def test_the_model_is_not_modified() -> None:
    model = _model("efficientnet_b0")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = _x()
    out = model(x)
    LRP(model, engine.EpsilonPlusFlat())(x)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training and torch.equal(model(x), out)


@pytest.mark.integration
@needs_venv("zennit")
def test_the_real_torchvision_classes_equal_the_in_repo_structures() -> None:
    """torchvision 0.29's convnext_tiny, efficientnet_b0 and mobilenet_v3_small (in .venv-zennit): their
    state dicts load strictly into the in-repo builders at full size, with the same logits and the same
    relevance (float64)."""
    rows = run_json_lines("zennit", Path(__file__).with_name("torchvision_modern.py"), timeout=1200)
    assert {r["model"] for r in rows} == {"convnext_tiny", "efficientnet_b0", "mobilenet_v3_small"}
    for row in rows:
        assert row["logits"] < 1e-9 and row["err"] < 1e-9, row
