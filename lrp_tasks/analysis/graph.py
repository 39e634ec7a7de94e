"""The sparse side of SpRAy: a k-nearest-neighbour affinity graph and the smallest eigenpairs of its
symmetric normalized Laplacian, in memory linear in the number of samples.

CoRelAy builds a dense N×N distance matrix first (20 GB at 50,000 samples); here no N×N array ever
exists: the graph holds at most ``2 · n_neighbors · N`` entries, and the eigensolver (ARPACK's Lanczos,
scipy's ``eigsh``) only multiplies vectors by it.

Neighbours are exact (scikit-learn's ``kneighbors_graph``) up to ``exact_max`` samples. Exact search in
1,024 dimensions costs N² distance evaluations (about 20 minutes for 200,000 maps on two cores), so larger
classes use a blocked search: k-means cells of about ``block`` samples; the neighbours of the samples of
a cell are searched, exactly, among the samples of that cell and of the ``probes - 1`` cells with the
nearest centres. The cost is N · probes · block distance evaluations: linear in N.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import eigsh

BLOCK = 2048
PROBES = 4
EIGSH_TOL = 1e-10
"""Relative accuracy of the eigenvalues (ARPACK's default, 0, means machine precision and costs a
third more iterations for digits nobody reads)."""


WORKING_MEMORY_MIB = 128
"""scikit-learn computes distances in chunks of this size (its default, 1 GiB, would be the largest
single allocation of the whole analysis)."""


def knn_connectivity(x: np.ndarray, n_neighbors: int, exact_max: int, seed: int = 0) -> sp.csr_matrix:
    """Directed kNN graph (row i: the ``n_neighbors`` nearest other samples of i), ones as values."""
    from sklearn import config_context
    from sklearn.neighbors import kneighbors_graph

    n = len(x)
    k = min(n_neighbors, n - 1)
    with config_context(working_memory=WORKING_MEMORY_MIB):
        if n <= exact_max:
            graph = kneighbors_graph(x, k, mode="connectivity", include_self=False)
            return graph.tocsr().astype(np.float64)
        return _blocked_knn(x, k, seed)


def _blocked_knn(x: np.ndarray, k: int, seed: int, block: int = BLOCK, probes: int = PROBES) -> sp.csr_matrix:
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.neighbors import NearestNeighbors

    n = len(x)
    n_cells = max(2, round(n / block))
    rng = np.random.default_rng(seed)
    fit_rows = np.sort(rng.choice(n, size=min(n, 64 * n_cells), replace=False))
    coarse = MiniBatchKMeans(n_clusters=n_cells, batch_size=4096, n_init=1, random_state=seed, max_iter=20)
    coarse.fit(x[fit_rows])
    cell = coarse.predict(x)
    centres = coarse.cluster_centers_
    centre_nn = NearestNeighbors(n_neighbors=min(probes, n_cells)).fit(centres)
    _, near_cells = centre_nn.kneighbors(centres)
    order = np.argsort(cell, kind="stable")
    bounds = np.searchsorted(cell[order], np.arange(n_cells + 1))
    members = [order[bounds[c] : bounds[c + 1]] for c in range(n_cells)]
    cols = np.empty((n, k), dtype=np.int64)
    for c in range(n_cells):
        queries = members[c]
        if len(queries) == 0:
            continue
        candidates = np.concatenate([members[j] for j in near_cells[c]])
        # a small cell can leave too few candidates: widen to more cells until there are enough
        extra = probes
        while len(candidates) < k + 1:
            extra += probes
            _, wider = NearestNeighbors(n_neighbors=min(extra, n_cells)).fit(centres).kneighbors(centres[c : c + 1])
            candidates = np.concatenate([members[j] for j in wider[0]])
        nn = NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(x[candidates])
        _, found = nn.kneighbors(x[queries])
        found = candidates[found]
        # drop the query itself (it is among the candidates); if a duplicate hid it, drop the farthest
        is_self = found == queries[:, None]
        keep = ~is_self
        keep[~is_self.any(axis=1), -1] = False
        cols[queries] = found[keep].reshape(len(queries), k)
    rows = np.repeat(np.arange(n), k)
    return sp.csr_matrix((np.ones(n * k), (rows, cols.ravel())), shape=(n, n))


def symmetric_affinity(connectivity: sp.csr_matrix) -> sp.csr_matrix:
    """``(A + Aᵀ) / 2``: 1 for mutual neighbours, 1/2 for one-sided ones."""
    return ((connectivity + connectivity.T) * 0.5).tocsr()


def normalized_affinity(affinity: sp.csr_matrix) -> sp.csr_matrix:
    """``D^-1/2 A D^-1/2`` (D: degrees); the symmetric normalized Laplacian is ``I`` minus this."""
    degree = np.asarray(affinity.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(degree)
    np.divide(1.0, np.sqrt(degree), out=inv_sqrt, where=degree > 0)
    scale = sp.diags(inv_sqrt)
    return (scale @ affinity @ scale).tocsr()


def laplacian_eigenpairs(affinity: sp.csr_matrix, n_eigval: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``n_eigval`` smallest eigenvalues of the symmetric normalized Laplacian (ascending) and their
    eigenvectors ``(n, n_eigval)``.

    L = I - M, so they are one minus the largest eigenvalues of M = D^-1/2 A D^-1/2, which Lanczos finds
    fastest. Tiny graphs (ARPACK needs more vectors than it returns) use a dense solver."""
    m = normalized_affinity(affinity)
    n = m.shape[0]
    k = min(n_eigval, n - 1)
    if n <= 2 * k + 1:
        values, vectors = np.linalg.eigh(m.toarray())
        values, vectors = values[::-1][:k], vectors[:, ::-1][:, :k]
    else:
        v0 = np.random.default_rng(seed).uniform(-1.0, 1.0, n)
        values, vectors = eigsh(m, k=k, which="LA", v0=v0, tol=EIGSH_TOL)
        order = np.argsort(-values)
        values, vectors = values[order], vectors[:, order]
    return np.clip(1.0 - values, 0.0, 2.0), vectors


def eigengap_k(eigenvalues: np.ndarray, k_min: int, k_max: int) -> int:
    """The k in ``k_min..k_max`` with the largest relative eigengap ``(λ_k − λ_{k−1}) / λ_k`` (0-based,
    ascending eigenvalues): k clusters leave k eigenvalues near zero before a jump.

    Relative, not absolute: the eigenvalues of a kNN graph's Laplacian spread out as they grow, so an
    absolute gap between the 8th and 9th eigenvalue easily beats the one after two near-zero values
    (two components: the clearest split there is). The relative gap of that split is 1."""
    top = min(k_max, len(eigenvalues) - 1)
    if top < k_min:
        return max(1, min(k_min, len(eigenvalues)))
    candidates = np.arange(k_min, top + 1)
    upper, lower = eigenvalues[candidates], eigenvalues[candidates - 1]
    relative = np.divide(upper - lower, upper, out=np.zeros(len(candidates)), where=upper > 1e-12)
    return int(candidates[np.argmax(relative)])
