"""spray_maps on in-memory rows: the whole pipeline, its layout, and refused requests."""

from __future__ import annotations

import numpy as np
import pytest

from lrp_tasks.analysis import SprayRequestError, SpraySpec, spray_maps
from lrp_tasks.analysis.preprocess import normalize


def two_strategies(n: int, minority: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    odd = rng.random(n) < minority
    maps = rng.normal(0, 0.05, (n, 16, 16)).astype(np.float32)
    maps[odd, 1:4, 1:4] += 1.0
    maps[~odd, 6:10, 6:10] += 0.5
    return normalize(maps.reshape(n, -1), "l2"), odd


def test_layout_places_every_sample_and_keeps_strategies_apart():
    rows, odd = two_strategies(600)
    result = spray_maps(rows, SpraySpec(layout="tsne", layout_max_samples=200, k_max=4))
    assert result.k == 2
    assert result.layout.shape == (600, 2) and np.isfinite(result.layout).all()
    # samples placed through the graph land among their own strategy, not between the two
    a, b = result.layout[odd].mean(0), result.layout[~odd].mean(0)
    to_a = np.linalg.norm(result.layout - a, axis=1) < np.linalg.norm(result.layout - b, axis=1)
    assert (to_a == odd).mean() > 0.95


def test_large_classes_take_the_blocked_neighbour_search():
    rows, odd = two_strategies(3000, seed=1)
    result = spray_maps(rows, SpraySpec(layout="none", exact_knn_max=1000, k_max=4))
    assert any("blocked neighbour search" in note for note in result.notes)
    assert result.k == 2
    top = int(np.argmin(result.stats_by_k[2].rank))
    assert ((result.labels == top) == odd).mean() > 0.99


def test_requests_that_cannot_be_served():
    rows, _ = two_strategies(10)
    with pytest.raises(SprayRequestError, match="the class has 2 sample"):
        spray_maps(rows[:2], SpraySpec())
    with pytest.raises(SprayRequestError, match="k=12 clusters requested but class 4 has only 10 samples"):
        spray_maps(rows, SpraySpec(k=12), what="class 4")


def test_spray_spec_validation():
    with pytest.raises(ValueError, match="k_min"):
        SpraySpec(k_min=5, k_max=3)
    with pytest.raises(ValueError, match="k is 'auto'"):
        SpraySpec(k=1)
    with pytest.raises(ValueError, match="must not exceed n_eigval"):
        SpraySpec(n_eigval=8, k_max=10)
