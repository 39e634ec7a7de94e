"""The sparse graph and its eigenpairs, checked against dense textbook formulas on small data."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from lrp_tasks.analysis.graph import (
    _blocked_knn,
    eigengap_k,
    knn_connectivity,
    laplacian_eigenpairs,
    symmetric_affinity,
)


def blobs(n: int, d: int, centres: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 5, size=(centres, d))
    return (means[rng.integers(0, centres, n)] + rng.normal(size=(n, d))).astype(np.float32)


def dense_knn(x: np.ndarray, k: int) -> np.ndarray:
    d = ((x[:, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    a = np.zeros_like(d)
    a[np.arange(len(x))[:, None], np.argsort(d, axis=1)[:, :k]] = 1.0
    return a


def test_exact_graph_is_sparse_symmetric_and_equals_the_dense_definition():
    x = blobs(300, 16, 4)
    conn = knn_connectivity(x, 10, exact_max=1000)
    assert sp.issparse(conn) and conn.nnz == 300 * 10
    np.testing.assert_array_equal(conn.toarray(), dense_knn(x, 10))
    aff = symmetric_affinity(conn)
    assert (aff != aff.T).nnz == 0
    assert set(np.unique(aff.data)) <= {0.5, 1.0}
    assert aff.nnz <= 2 * 10 * 300


def test_blocked_search_finds_most_true_neighbours():
    x = blobs(6000, 32, 12, seed=1)
    exact = knn_connectivity(x, 10, exact_max=10**6)
    approx = _blocked_knn(x, 10, seed=0, block=500, probes=4)
    assert approx.nnz == 6000 * 10 and (approx.diagonal() == 0).all()
    recall = exact.multiply(approx).nnz / exact.nnz
    assert recall > 0.9, recall


def test_eigenpairs_equal_a_dense_eigendecomposition_of_the_laplacian():
    x = blobs(400, 8, 3, seed=2)
    aff = symmetric_affinity(knn_connectivity(x, 10, exact_max=1000))
    values, vectors = laplacian_eigenpairs(aff, 12)
    a = aff.toarray()
    deg = a.sum(1)
    lap = np.eye(len(a)) - a / np.sqrt(np.outer(deg, deg))
    expected = np.linalg.eigvalsh(lap)[:12]
    np.testing.assert_allclose(values, np.clip(expected, 0, 2), atol=1e-8)
    residual = lap @ vectors - vectors * values
    assert np.abs(residual).max() < 1e-6


def test_tiny_graphs_use_the_dense_solver():
    x = blobs(20, 4, 2)
    aff = symmetric_affinity(knn_connectivity(x, 5, exact_max=100))
    values, vectors = laplacian_eigenpairs(aff, 32)
    assert len(values) == 19 and vectors.shape == (20, 19)
    assert np.all(np.diff(values) >= -1e-12)


def test_eigengap_prefers_the_split_after_near_zero_eigenvalues():
    # two components (two zeros), then values spreading out with bigger absolute gaps later
    values = np.array([0.0, 1e-15, 0.08, 0.12, 0.16, 0.19, 0.2, 0.26, 0.4, 0.5, 0.6])
    assert eigengap_k(values, 2, 10) == 2
    three = np.array([0.0, 0.001, 0.002, 0.5, 0.55, 0.6])
    assert eigengap_k(three, 2, 5) == 3
    assert eigengap_k(three, 4, 5) in (4, 5)  # the range bounds the answer
