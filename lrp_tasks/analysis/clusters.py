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
    model = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(points)
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
    """Statistics of clustering ``labels`` of rows ``x`` (float32 ``(n, d)``), in one pass over x."""
    n, d = x.shape
    size = np.bincount(labels, minlength=k).astype(np.int64)
    sums = np.zeros((k, d), dtype=np.float64)
    _blockwise_sums(x, labels, sums)
    mean = sums.sum(axis=0) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_maps = np.where(size[:, None] > 0, sums / np.maximum(size, 1)[:, None], 0.0)
    total = float(np.einsum("ij,ij->", x, x, dtype=np.float64) - n * mean @ mean)
    diff = mean_maps - mean
    between = size * np.einsum("ij,ij->i", diff, diff)
    norm = float(np.linalg.norm(mean))
    distance = np.sqrt(np.einsum("ij,ij->i", diff, diff)) / (norm if norm > 0 else 1.0)
    score = between / total if total > 0 else np.zeros(k)
    rank = np.empty(k, dtype=np.int64)
    rank[np.lexsort((np.arange(k), -score))] = np.arange(1, k + 1)
    return ClusterStats(size, mean_maps.astype(np.float32), distance, score, rank)


def _blockwise_sums(x: np.ndarray, labels: np.ndarray, out: np.ndarray, block: int = 65536) -> None:
    """Per-label row sums without an (n, d) float64 copy: one-hot matrix products block by block."""
    import scipy.sparse as sp

    k = out.shape[0]
    for start in range(0, len(x), block):
        lab = labels[start : start + block]
        onehot = sp.csr_matrix((np.ones(len(lab)), (lab, np.arange(len(lab)))), shape=(k, len(lab)))
        out += onehot @ x[start : start + block].astype(np.float64)
