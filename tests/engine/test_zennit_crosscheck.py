"""zennit 1.0 cross-check (in .venv-zennit, where torchvision loads): the five presets in zennit
mode and gradient×input equal zennit on the seed CNN and on torchvision ResNets (BasicBlock and
Bottleneck, zennit's ResNetCanonizer), float32 and float64, three kinds of target; and the default
composites conserve relevance on torchvision architectures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reference_venv import needs_venv, run_json_lines

pytestmark = needs_venv("zennit")
TOLERANCE = {"float32": 1e-4, "float64": 1e-9}
"""Relative to max |R| of each sample."""


def run_script(name: str, *args: str, timeout: int = 1800) -> list[dict]:
    return run_json_lines("zennit", Path(__file__).with_name(name), *args, timeout=timeout)


@pytest.mark.integration
def test_presets_and_gradient_times_input_match_zennit():
    rows = run_script("zennit_crosscheck.py")
    methods = {"EpsilonGammaBox", "EpsilonPlus", "EpsilonAlpha2Beta1", "EpsilonPlusFlat", "EpsilonAlpha2Beta1Flat"}
    assert {r["method"] for r in rows} == methods | {"gradient×input"}
    assert {r["model"] for r in rows} == {"seed_cnn", "resnet_basicblock", "resnet_bottleneck"}
    assert {(r["dtype"], r["target"]) for r in rows} == {
        (d, t) for d in TOLERANCE for t in ("argmax", "fixed", "per-sample")
    }
    assert len(rows) == 3 * 2 * 6 * 3
    for row in rows:
        assert row["err"] < TOLERANCE[row["dtype"]], row


@pytest.mark.integration
def test_default_composites_conserve_on_torchvision_architectures():
    rows = run_script("torchvision_conservation.py")
    assert {r["model"] for r in rows} == {"resnet18", "resnet50", "vgg16", "densenet121", "mobilenet_v2"}
    for row in rows:
        # a gap beyond the tolerance is always announced, with its figure
        assert row["worst_gap"] < CONSERVATION_GAP or any("LRP conservation" in w for w in row["warned"]), row
        # no numerical blow-up: the input relevance stays between 0 and the explained logit
        assert row["worst_gap"] <= 1.0 + 1e-3, row
        # what is lost with biases kept is the biases' share: bias-free rules conserve (MobileNetV2's
        # dead depthwise channels pass relevance to bias-only activations, see the README)
        if row["convention"] == "zero_bias" and row["model"] != "mobilenet_v2":
            assert row["worst_gap"] < 1e-3, row


CONSERVATION_GAP = 0.05
