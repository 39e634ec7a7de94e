"""LXT 2.1 cross-check (in .venv-lxt): CP-LRP on torchvision's own VisionTransformer equals LXT's
ViT recipe, without and with zennit's Gamma on Linear/Conv2d through LXT's zennit bridge, in float32
and float64, for three kinds of target; our torchvision-structured ViT gives the same relevance."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reference_venv import needs_venv, run_json_lines

pytestmark = needs_venv("lxt")
TOLERANCE = {"float32": 1e-4, "float64": 1e-9}
"""Relative to max |R| of each sample."""


@pytest.mark.integration
def test_cp_lrp_on_torchvision_vit_matches_lxt():
    rows = run_json_lines("lxt", Path(__file__).with_name("lxt_crosscheck.py"), timeout=900)
    assert {(r["method"], r["dtype"], r["target"]) for r in rows} == {
        (m, d, t) for m in ("CPLRP", "CPLRP-gamma") for d in TOLERANCE for t in ("argmax", "fixed", "per-sample")
    }
    for row in rows:
        assert row["err"] < TOLERANCE[row["dtype"]], row
        assert row["vit_structure_err"] < TOLERANCE[row["dtype"]], row


@pytest.mark.integration
def test_timm_s_own_vision_transformer_equals_the_in_repo_timm_structure():
    """timm's library class (in .venv-lxt, where timm is installed) — not covered by LXT (LXT #31) —
    gives the relevance of the in-repo timm structure holding its weights (float64)."""
    rows = run_json_lines("lxt", Path(__file__).with_name("timm_real.py"), timeout=600)
    assert {r["composite"] for r in rows} == {"AttnLRP", "CPLRP", "EpsilonPlusFlat"}
    for row in rows:
        assert row["logits"] < 1e-12 and row["err"] < 1e-9, row
