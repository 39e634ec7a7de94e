"""2-D coordinates of a class's samples for plots: t-SNE of the spectral embedding.

t-SNE (scikit-learn's Barnes-Hut) is chosen over UMAP because it needs nothing beyond scikit-learn
(umap-learn brings numba and its compile step to every worker) and its layout of a spectral embedding
is what CoRelAy and ViRelAy users know. Its cost grows faster than SpRAy's other steps, so it is
fitted on at most ``max_samples`` samples; the others are placed at the mean position of their placed
neighbours in the kNN graph (repeated until every connected sample is placed), which keeps the whole
analysis linear in the number of samples.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .clusters import row_normalized


def tsne_layout(
    embedding: np.ndarray, affinity: sp.csr_matrix, labels: np.ndarray, max_samples: int, seed: int
) -> np.ndarray:
    """``(n, 2)`` float32 coordinates."""
    n = len(embedding)
    points = row_normalized(embedding)
    if n < 8:  # too few for t-SNE's perplexity: the two leading non-trivial eigenvectors
        out = np.zeros((n, 2))
        cols = points[:, 1:3]
        out[:, : cols.shape[1]] = cols
        return out.astype(np.float32)
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(seed)
    fitted = np.sort(rng.choice(n, size=max_samples, replace=False)) if n > max_samples else np.arange(n)
    perplexity = float(min(30.0, (len(fitted) - 1) / 3.0))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    coords = np.zeros((n, 2))
    coords[fitted] = tsne.fit_transform(points[fitted])
    if len(fitted) < n:
        placed = np.zeros(n, dtype=bool)
        placed[fitted] = True
        _propagate(coords, placed, affinity, labels)
    return coords.astype(np.float32)


def _propagate(coords: np.ndarray, placed: np.ndarray, affinity: sp.csr_matrix, labels: np.ndarray) -> None:
    """Place unplaced samples at the affinity-weighted mean of their placed neighbours, sweep by sweep."""
    while not placed.all():
        weights = affinity @ placed.astype(np.float64)
        sums = affinity @ (coords * placed[:, None])
        ready = ~placed & (weights > 0)
        if not ready.any():
            break
        coords[ready] = sums[ready] / weights[ready, None]
        placed |= ready
    for label in np.unique(labels[~placed]):  # cut off from every placed sample: their cluster's centre
        members = labels == label
        anchor = members & placed
        coords[members & ~placed] = coords[anchor].mean(axis=0) if anchor.any() else coords[placed].mean(axis=0)
