"""SpRAy on the maps of one class, in memory: the pure computation, no store, no Prefect, no Ray.

    result = spray_maps(rows, SpraySpec(), pooled_shape=(32, 32))

``rows`` are pooled, normalized maps (:func:`lrp_tasks.analysis.preprocess.prepare`), one per sample.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from lrp_tasks.config.analysis import SpraySpec

from .clusters import ClusterStats, cluster_stats, kmeans
from .graph import eigengap_k, knn_connectivity, laplacian_eigenpairs, symmetric_affinity
from .layout import tsne_layout


class SprayRequestError(ValueError):
    """A SpRAy request that cannot be served (too few samples, k larger than the class, ...)."""


@dataclass
class SprayResult:
    """Everything SpRAy finds for one class."""

    eigenvalues: np.ndarray
    """Smallest eigenvalues of the symmetric normalized Laplacian, ascending."""
    eigenvectors: np.ndarray
    """``(n, n_eigval)`` float32: the spectral embedding."""
    eigengap_k: int
    k: int
    """Clusters of the main result: ``eigengap_k`` or the requested k."""
    labels: np.ndarray
    """``(n,)`` cluster of each sample for ``k``."""
    distance: np.ndarray
    """``(n,)`` distance of each sample to its cluster centre in the (row-normalized) embedding."""
    labels_by_k: dict[int, np.ndarray]
    stats_by_k: dict[int, ClusterStats]
    class_mean: np.ndarray
    layout: np.ndarray | None
    """``(n, 2)`` or None when ``layout: none``."""
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time of each step (neighbours, eigenpairs, kmeans, layout)."""


def spray_maps(rows: np.ndarray, spec: SpraySpec, what: str = "the class") -> SprayResult:
    """Run SpRAy on rows ``(n, d)`` (float32, already pooled and normalized)."""
    n = len(rows)
    if n < 3:
        raise SprayRequestError(f"{what} has {n} sample(s); SpRAy needs at least 3")
    if isinstance(spec.k, int) and spec.k >= n:
        raise SprayRequestError(f"k={spec.k} clusters requested but {what} has only {n} samples")
    notes: list[str] = []
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[step] = now - clock
        clock = now

    connectivity = knn_connectivity(rows, spec.n_neighbors, spec.exact_knn_max, spec.seed)
    if n > spec.exact_knn_max:
        notes.append(f"{n} samples > exact_knn_max={spec.exact_knn_max}: blocked neighbour search")
    affinity = symmetric_affinity(connectivity)
    del connectivity
    lap("neighbours")
    eigenvalues, eigenvectors = laplacian_eigenpairs(affinity, spec.n_eigval, spec.seed)
    lap("eigenpairs")
    m = len(eigenvalues)
    gap_k = eigengap_k(eigenvalues, spec.k_min, spec.k_max)
    k = gap_k if spec.k == "auto" else int(spec.k)
    if k > m:
        raise SprayRequestError(f"k={k} exceeds the {m} eigenvectors computed for {what} (n_eigval, class size)")
    ks = sorted({kk for kk in range(spec.k_min, spec.k_max + 1) if kk <= m and kk < n} | {k})
    labels_by_k: dict[int, np.ndarray] = {}
    stats_by_k: dict[int, ClusterStats] = {}
    distance = np.zeros(n)
    for kk in ks:
        labels, dist = kmeans(eigenvectors, kk, spec.seed)
        labels_by_k[kk] = labels
        stats_by_k[kk] = cluster_stats(rows, labels, kk)
        if kk == k:
            distance = dist
    class_mean = (stats_by_k[k].mean_maps.T.astype(np.float64) @ stats_by_k[k].size / n).astype(np.float32)
    lap("kmeans")
    layout = None
    if spec.layout == "tsne":
        layout = tsne_layout(eigenvectors, affinity, labels_by_k[k], spec.layout_max_samples, spec.seed)
        lap("layout")
    return SprayResult(
        eigenvalues=eigenvalues,
        eigenvectors=eigenvectors.astype(np.float32),
        eigengap_k=gap_k,
        k=k,
        labels=labels_by_k[k],
        distance=distance,
        labels_by_k=labels_by_k,
        stats_by_k=stats_by_k,
        class_mean=class_mean,
        layout=layout,
        notes=notes,
        seconds=seconds,
    )
