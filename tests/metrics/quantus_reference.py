"""Quantus 0.6 RegionPerturbation / PixelFlipping on given inputs, in float64; run inside .venv-quantus.

Usage: python quantus_reference.py IN.npz OUT.npz. IN holds x, a, y (float64 / int64), ``model`` (the
name of a builder in MODELS) with ``weights`` (a safetensors path) and ``jobs`` (JSON: a list of
{"key", "metric": "region_perturbation" | "pixel_flipping", "patch_size", "steps", "order"}). OUT holds
Quantus's curve for each job key: f(x) − f(x_k) for region perturbation, f(x_k) for pixel flipping."""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import torch

torch.set_default_dtype(torch.float64)  # Quantus wraps inputs with torch.Tensor(x): float64 from here on

import quantus  # noqa: E402
from safetensors.torch import load_file  # noqa: E402


def build(name: str, weights: str) -> torch.nn.Module:
    if name == "digits":
        from lrp_tasks.models.digits import build_digits_cnn

        model = build_digits_cnn()
    elif name == "odd_cnn":
        from tests.metrics.models import odd_cnn

        model = odd_cnn()
    else:
        raise SystemExit(f"unknown model {name}")
    model.load_state_dict(load_file(weights))
    return model.double().eval()


def main(src: str, dst: str) -> None:
    data = np.load(src)
    model = build(str(data["model"]), str(data["weights"]))
    x, a, y = data["x"], data["a"], data["y"]
    out = {}
    warnings.simplefilter("ignore")
    for job in json.loads(str(data["jobs"])):
        common = {"abs": False, "normalise": False, "perturb_baseline": "black", "disable_warnings": True}
        if job["metric"] == "region_perturbation":
            metric = quantus.RegionPerturbation(
                patch_size=job["patch_size"], order=job["order"], regions_evaluation=job["steps"], **common
            )
        else:
            metric = quantus.PixelFlipping(features_in_step=1, **common)
        curves = metric(
            model=model,
            x_batch=x,
            y_batch=y,
            a_batch=a,
            softmax=False,
            channel_first=True,
            device="cpu",
            batch_size=len(x),
        )
        out[job["key"]] = np.asarray(curves, dtype=np.float64)
    np.savez(dst, **out, quantus_version=quantus.__version__)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
