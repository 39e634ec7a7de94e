"""Batched region perturbation / pixel flipping equal a naive per-sample, per-step reference.

The reference builds regions from explicit pixel coordinates, sorts them with Python's ``sorted`` and
runs the model once per step on one sample: everything the batched code does with rank maps, ``where``
and big forward batches is done here the slow, obvious way, in float64."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from lrp_tasks.metrics import RegionPerturbation, aopc, padding, pixel_flipping
from lrp_tasks.metrics.random import uniform
from lrp_tasks.models.digits import build_digits_cnn
from lrp_tasks.sources.models import read_state_dict
from tests.digits_audit import ROOT
from tests.metrics import models


def digits_model() -> nn.Module:
    model = build_digits_cnn()
    model.load_state_dict(read_state_dict(ROOT / "models" / "digits_cnn.safetensors"))
    return model.double().eval()


def odd_cnn() -> nn.Module:
    return models.odd_cnn().double().eval()


def digits_inputs(n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images[:n] / 16.0, dtype=torch.float64).reshape(n, 1, 8, 8)
    rel = x * torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return x, rel


def naive_regions(h: int, w: int, p: int) -> list[list[tuple[int, int]]]:
    (top, _), (left, _) = padding(h, p), padding(w, p)
    regions = []
    for gi in range(math.ceil(h / p)):
        for gj in range(math.ceil(w / p)):
            pixels = [
                (i, j)
                for i in range(gi * p - top, (gi + 1) * p - top)
                for j in range(gj * p - left, (gj + 1) * p - left)
                if 0 <= i < h and 0 <= j < w
            ]
            regions.append(pixels)
    return regions


def naive_curve(
    model: nn.Module, x: torch.Tensor, rel: torch.Tensor, target: int, p: int, steps: int, order: list[int] | str, base
) -> list[float]:
    """One sample: region scores by explicit sums, order by sorted(), one forward per step."""
    c, h, w = x.shape
    regions = naive_regions(h, w, p)
    scores = [sum(float(rel[ch, i, j]) for ch in range(c) for i, j in pix) for pix in regions]
    if order == "morf":
        order = sorted(range(len(regions)), key=lambda r: (-scores[r], r))
    elif order == "lerf":
        order = sorted(range(len(regions)), key=lambda r: (scores[r], r))
    xk = x.clone()
    with torch.no_grad():
        curve = [float(model(xk[None])[0, target])]
        for region in order[:steps]:
            for i, j in regions[region]:
                xk[:, i, j] = base[:, i, j]
            curve.append(float(model(xk[None])[0, target]))
    return curve


def check_against_naive(model, x, rel, target, rp: RegionPerturbation, keys) -> None:
    curves = rp.curves(model, x, rel, target, keys=keys)
    base = rp.baseline_values(x, keys).expand_as(x)
    random_order = rp.region_order(rel, "random", keys)
    for order in rp.orders:
        got = curves[order]
        assert got.shape == (len(x), rp.steps + 1) and got.dtype == torch.float64
        for s in range(len(x)):
            how = random_order[s].tolist() if order == "random" else order
            want = naive_curve(model, x[s], rel[s], int(target[s]), rp.patch_size, rp.steps, how, base[s])
            np.testing.assert_allclose(got[s].numpy(), want, rtol=1e-12, atol=1e-12, err_msg=f"{order} sample {s}")


@pytest.mark.parametrize("patch_size,steps", [(1, 20), (2, 16), (3, 9), (4, 4)])
@pytest.mark.parametrize("baseline", ["black", "mean", "uniform"])
def test_batched_curves_equal_the_naive_reference_on_digits(patch_size, steps, baseline) -> None:
    model = digits_model()
    x, rel = digits_inputs(4)
    target = model(x).argmax(1)
    rp = RegionPerturbation(patch_size, steps, ("morf", "lerf", "random"), baseline, seed=3, batch_size=37)
    check_against_naive(model, x, rel, target, rp, keys=np.arange(100, 104))


@pytest.mark.parametrize("patch_size", [1, 3, 4])
def test_padding_and_several_channels_match_the_reference(patch_size) -> None:
    model = odd_cnn()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(5, 3, 10, 7, generator=g, dtype=torch.float64)
    rel = torch.randn(5, 3, 10, 7, generator=g, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 3, 4])
    rp = RegionPerturbation(patch_size, 6, ("morf", "lerf", "random"), "mean", seed=0, batch_size=16)
    check_against_naive(model, x, rel, target, rp, keys=None)


def test_one_channel_relevance_is_broadcast_over_the_input_channels() -> None:
    model = odd_cnn()
    x = torch.rand(4, 3, 10, 7, dtype=torch.float64)
    rel1 = torch.randn(4, 1, 10, 7, dtype=torch.float64)
    rp = RegionPerturbation(2, 5, ("morf",), "black")
    target = torch.zeros(4, dtype=torch.long)
    one = rp.curves(model, x, rel1, target)["morf"]
    full = rp.curves(model, x, rel1.expand_as(x).contiguous(), target)["morf"]
    torch.testing.assert_close(one, full, rtol=0, atol=0)


def test_curves_do_not_depend_on_the_batching_or_the_order_list() -> None:
    model = digits_model()
    x, rel = digits_inputs(10)
    target = model(x).argmax(1)
    keys = np.arange(40, 50)
    full = RegionPerturbation(2, 16, ("morf", "lerf", "random"), "uniform", seed=7, batch_size=4096)
    whole = full.curves(model, x, rel, target, keys=keys)
    small = RegionPerturbation(2, 16, ("random",), "uniform", seed=7, batch_size=5)
    halves = [
        small.curves(model, x[i : i + 3], rel[i : i + 3], target[i : i + 3], keys=keys[i : i + 3]) for i in (0, 3)
    ]
    torch.testing.assert_close(torch.cat([h["random"] for h in halves]), whole["random"][:6], rtol=1e-12, atol=1e-12)
    other_seed = RegionPerturbation(2, 16, ("random",), "uniform", seed=8).curves(model, x, rel, target, keys=keys)
    assert not torch.equal(other_seed["random"], whole["random"])


def test_step_zero_is_the_unperturbed_logit_and_the_last_step_of_all_regions_is_the_baseline() -> None:
    model = digits_model()
    x, rel = digits_inputs(4)
    target = torch.tensor([1, 2, 3, 4])
    curves = pixel_flipping(64, ("morf", "lerf")).curves(model, x, rel, target)
    logits = model(x).gather(1, target[:, None])[:, 0]
    black = model(x.amin(dim=(1, 2, 3), keepdim=True).expand_as(x).contiguous()).gather(1, target[:, None])[:, 0]
    for order in ("morf", "lerf"):
        torch.testing.assert_close(curves[order][:, 0], logits)
        torch.testing.assert_close(curves[order][:, -1], black)


def test_random_order_is_a_seeded_permutation_per_key() -> None:
    rp = RegionPerturbation(2, 4, ("random",), seed=5)
    rel = torch.zeros(3, 1, 8, 8)
    a = rp.region_order(rel, "random", np.array([1, 2, 1]))
    assert sorted(a[0].tolist()) == list(range(16))
    assert torch.equal(a[0], a[2]) and not torch.equal(a[0], a[1])
    b = RegionPerturbation(2, 4, ("random",), seed=6).region_order(rel, "random", np.array([1, 2, 1]))
    assert not torch.equal(a, b)


def test_uniform_noise_lies_between_the_sample_minimum_and_maximum() -> None:
    x = torch.rand(4, 3, 5, 5, dtype=torch.float64) * torch.arange(1, 5, dtype=torch.float64).reshape(4, 1, 1, 1)
    base = RegionPerturbation(1, 1, baseline="uniform", seed=0).baseline_values(x, np.arange(4))
    assert base.shape == x.shape
    lo, hi = x.amin(dim=(1, 2, 3)), x.amax(dim=(1, 2, 3))
    assert ((base >= lo.reshape(4, 1, 1, 1)) & (base <= hi.reshape(4, 1, 1, 1))).all()
    u = uniform(0, np.arange(1000), 64)
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.01


def test_aopc_is_the_mean_drop_over_steps_zero_to_l() -> None:
    curve = np.array([[3.0, 2.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_allclose(aopc(curve), [(0 + 1 + 2 + 3) / 4, 0.0])
    np.testing.assert_allclose(aopc(torch.tensor(curve)), aopc(curve))


def test_bad_settings_and_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="patch_size must be >= 1"):
        RegionPerturbation(0, 4)
    with pytest.raises(ValueError, match="orders must be distinct values"):
        RegionPerturbation(2, 4, ("morf", "morf"))
    with pytest.raises(ValueError, match="baseline must be one of"):
        RegionPerturbation(2, 4, baseline="white")
    rp = RegionPerturbation(2, 17)
    model = digits_model()
    x, rel = digits_inputs(2)
    with pytest.raises(ValueError, match="steps=17 exceeds the 16 regions"):
        rp.curves(model, x, rel, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="does not fit inputs"):
        RegionPerturbation(2, 4).curves(model, x, rel[:, :, :4], torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="image inputs"):
        RegionPerturbation(2, 4).n_regions((10,))
