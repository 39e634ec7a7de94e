"""Region perturbation and pixel flipping equal Quantus 0.6 (run in .venv-quantus) on 64 demo digits and
on a 3-channel CNN whose sides the patch size does not divide; the AOPC the audit stores equals the one
computed from Quantus's curves.

Same patch size, steps, order and the deterministic "black" baseline (the sample's minimum) on both sides;
Quantus with ``normalise=False, abs=False, softmax=False`` so it perturbs by the raw relevance and tracks
the logit. Curves are compared in float64 (Quantus wraps inputs with ``torch.Tensor``, which the
reference script makes float64)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from lrp_tasks.audit.prepare import open_shard_explainer
from lrp_tasks.config import parse_config
from lrp_tasks.metrics import RegionPerturbation
from lrp_tasks.store import open_audit
from tests.digits_audit import ROOT, digits_audit_config
from tests.metrics import models
from tests.metrics.test_perturbation import digits_model
from tests.reference_venv import needs_venv, run_in_venv

pytestmark = needs_venv("quantus")
N = 64
RP = {"patch_size": 2, "steps": 16}
PF_STEPS = 64  # every pixel of an 8×8 digit: Quantus's PixelFlipping always flips them all


def quantus_curves(tmp_path: Path, model: str, weights: Path, x, a, y, jobs: list[dict]) -> dict[str, np.ndarray]:
    src, dst = tmp_path / f"{model}-in.npz", tmp_path / f"{model}-out.npz"
    np.savez(src, x=x, a=a, y=y, model=model, weights=str(weights), jobs=json.dumps(jobs))
    run_in_venv("quantus", Path(__file__).with_name("quantus_reference.py"), str(src), str(dst), timeout=600)
    out = dict(np.load(dst))
    assert str(out.pop("quantus_version")) == "0.6.0"
    return out


@pytest.mark.integration
def test_digits_curves_and_stored_aopc_equal_quantus(tmp_path) -> None:
    metrics = {
        "region_perturbation": {**RP, "orders": ["morf", "lerf"], "baseline": "black"},
        "pixel_flipping": {"steps": PF_STEPS, "orders": ["morf"], "baseline": "black"},
    }
    cfg = digits_audit_config(tmp_path / "audit", "quantus", shard_size=N, batch_size=32, metrics=metrics)
    ex = open_shard_explainer(parse_config(cfg), device="cpu")
    ex.explain_shard(0, 0, N)
    audit = open_audit(str(tmp_path / "audit"))
    x = audit.dataset["input"].values[:N].astype(np.float64)
    a = audit.relevance.values[:N].astype(np.float64)
    y = audit.dataset["target"].values[:N].astype(np.int64)
    frame = audit.summaries
    jobs = [
        {"key": f"rp_{order}", "metric": "region_perturbation", **RP, "order": order} for order in ("morf", "lerf")
    ] + [{"key": "pf_morf", "metric": "pixel_flipping", "steps": PF_STEPS, "order": "morf"}]
    ref = quantus_curves(tmp_path, "digits", ROOT / "models" / "digits_cnn.safetensors", x, a, y, jobs)

    model = digits_model()
    xt, at, yt = torch.from_numpy(x), torch.from_numpy(a), torch.from_numpy(y)
    ours = RegionPerturbation(RP["patch_size"], RP["steps"], ("morf", "lerf"), "black").curves(model, xt, at, yt)
    pf = RegionPerturbation(1, PF_STEPS, ("morf",), "black").curves(model, xt, at, yt)["morf"].numpy()
    for order in ("morf", "lerf"):
        curve = ours[order].numpy()
        drop = curve[:, :1] - curve[:, 1:]  # Quantus's region perturbation curve: f(x) − f(x_k), k = 1..L
        assert ref[f"rp_{order}"].shape == (N, RP["steps"])
        np.testing.assert_allclose(drop, ref[f"rp_{order}"], rtol=1e-5, atol=1e-9)
        # The stored (float32) AOPC equals the AOPC of Quantus's curve: sum of the drops over L + 1 steps.
        from_quantus = ref[f"rp_{order}"].sum(axis=1) / (RP["steps"] + 1)
        np.testing.assert_allclose(frame[f"region_perturbation_aopc_{order}"], from_quantus, rtol=1e-5, atol=2e-5)
    assert ref["pf_morf"].shape == (N, PF_STEPS)
    np.testing.assert_allclose(pf[:, 1:], ref["pf_morf"], rtol=1e-5, atol=1e-9)  # Quantus: f(x_k), k = 1..D
    f0 = pf[:, 0]
    from_quantus = (f0[:, None] - ref["pf_morf"]).sum(axis=1) / (PF_STEPS + 1)
    np.testing.assert_allclose(frame["pixel_flipping_aopc_morf"], from_quantus, rtol=1e-5, atol=2e-5)
    # The comparison is meaningful: the curves fall, MoRF faster than LeRF.
    assert (ref["rp_morf"].sum(1) > ref["rp_lerf"].sum(1)).mean() > 0.9


@pytest.mark.integration
def test_three_channel_padded_regions_equal_quantus(tmp_path) -> None:
    net = models.odd_cnn()
    weights = tmp_path / "odd.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 10, 7, generator=g, dtype=torch.float64)
    a = torch.randn(16, 3, 10, 7, generator=g, dtype=torch.float64)
    model = net.double().eval()
    y = model(x).argmax(1)
    jobs = [
        {"key": f"{p}_{order}", "metric": "region_perturbation", "patch_size": p, "steps": steps, "order": order}
        for p, steps in ((3, 12), (4, 6))
        for order in ("morf", "lerf")
    ]
    ref = quantus_curves(tmp_path, "odd_cnn", weights, x.numpy(), a.numpy(), y.numpy(), jobs)
    for p, steps in ((3, 12), (4, 6)):
        ours = RegionPerturbation(p, steps, ("morf", "lerf"), "black").curves(model, x, a, y)
        for order in ("morf", "lerf"):
            curve = ours[order].numpy()
            np.testing.assert_allclose(curve[:, :1] - curve[:, 1:], ref[f"{p}_{order}"], rtol=1e-5, atol=1e-9)
