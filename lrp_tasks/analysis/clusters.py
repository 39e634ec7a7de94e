"""Clusters on the spectral embedding, what each looks like, and which to look at first."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def row_normalized(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (Ng, Jordan & Weiss): samples of one graph component share a direction."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return vectors / norms


def kmeans(embedding: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``(n,)`` and each sample's distance to its cluster centre, k-means on the first k
    eigenvectors (rows normalized)."""
    from sklearn.cluster import KMeans

    points = row_normalized(embedding[:, :k])
    # restarts are cheap for small classes; for large ones three already agree on well-split embeddings
    model = KMeans(n_clusters=k, n_init=10 if len(points) <= 20_000 else 3, random_state=seed).fit(points)
    labels = model.labels_.astype(np.int64)
    distance = np.linalg.norm(points - model.cluster_centers_[labels], axis=1)
    return labels, distance


@dataclass
class ClusterStats:
    """Per cluster of one clustering: size, mean map, and how much it stands out from the class."""

    size: np.ndarray
    mean_maps: np.ndarray
    """``(k, d)``: mean of the (pooled, normalized) maps of each cluster."""
    distance: np.ndarray
    """``‖μ_c − μ‖ / ‖μ‖``: how far the cluster's mean map is from the class's mean map."""
    score: np.ndarray
    """``n_c ‖μ_c − μ‖² / Σ_i ‖x_i − μ‖²``: the share of the class's map variance that this cluster's
    separation explains (sums to the between-cluster R² over clusters). A cluster scores high when it is
    both different and not tiny; a strategy used by a minority of the class scores higher than the
    majority it is split from."""
    rank: np.ndarray
    """1 = highest score (look here first)."""


def cluster_stats(x: np.ndarray, labels: np.ndarray, k: int) -> ClusterStats:
    """Statistics of clustering ``labels`` of rows ``x`` (float32 ``(n, d)``), in one blockwise pass
    over x (no float64 copy of it)."""
    n = len(x)
    size = np.bincount(labels, minlength=k).astype(np.int64)
    sums, squares = _blockwise_sums(x, labels, k)
    mean = sums.sum(axis=0) / n
    mean_maps = sums / np.maximum(size, 1)[:, None]
    total = squares - n * float(mean @ mean)
    diff = mean_maps - mean
    between = size * np.einsum("ij,ij->i", diff, diff)
    norm = float(np.linalg.norm(mean))
    distance = np.sqrt(np.einsum("ij,ij->i", diff, diff)) / (norm if norm > 0 else 1.0)
    score = between / total if total > 0 else np.zeros(k)
    rank = np.empty(k, dtype=np.int64)
    rank[np.lexsort((np.arange(k), -score))] = np.arange(1, k + 1)
    return ClusterStats(size, mean_maps.astype(np.float32), distance, score, rank)


def _blockwise_sums(x: np.ndarray, labels: np.ndarray, k: int, block: int = 8192) -> tuple[np.ndarray, float]:
    """Per-label row sums (float64, one-hot products block by block) and the total sum of squares."""
    import scipy.sparse as sp

    sums = np.zeros((k, x.shape[1]), dtype=np.float64)
    squares = 0.0
    for start in range(0, len(x), block):
        rows = x[start : start + block].astype(np.float64)
        lab = labels[start : start + block]
        onehot = sp.csr_matrix((np.ones(len(lab)), (lab, np.arange(len(lab)))), shape=(k, len(lab)))
        sums += onehot @ rows
        squares += float(np.einsum("ij,ij->", rows, rows))
    return sums, squares
