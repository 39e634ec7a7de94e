"""Cluster statistics against a direct computation."""

from __future__ import annotations

import numpy as np

from lrp_tasks.analysis.clusters import cluster_stats


def test_cluster_stats_match_the_definitions():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 6)).astype(np.float32)
    labels = rng.integers(0, 4, 500)
    x[labels == 2] += 3.0  # cluster 2 stands out
    stats = cluster_stats(x, labels, 4)
    mean = x.astype(np.float64).mean(0)
    total = ((x - mean) ** 2).sum()
    for c in range(4):
        members = x[labels == c].astype(np.float64)
        mu = members.mean(0)
        assert stats.size[c] == len(members)
        np.testing.assert_allclose(stats.mean_maps[c], mu, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(stats.distance[c], np.linalg.norm(mu - mean) / np.linalg.norm(mean), rtol=1e-6)
        np.testing.assert_allclose(stats.score[c], len(members) * ((mu - mean) ** 2).sum() / total, rtol=1e-6)
    assert stats.rank[2] == 1 and sorted(stats.rank) == [1, 2, 3, 4]


def test_a_minority_strategy_outranks_the_majority_it_splits_from():
    x = np.zeros((100, 2), dtype=np.float32)
    labels = np.r_[np.zeros(30, int), np.ones(70, int)]
    x[:30, 0] = 1.0
    x[30:, 1] = 1.0
    stats = cluster_stats(x, labels, 2)
    assert stats.rank[0] == 1
