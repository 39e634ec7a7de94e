"""Run in .venv-corelay: CoRelAy 1.0's SpectralEmbedding eigenvalues of each array of an .npz, with
its default eigensolver setting (``which="LM"``, key ``<name>``) and with ``which="LA"``
(key ``<name>:LA``).

    .venv-corelay/bin/python tests/analysis/corelay_eigenvalues.py rows.npz out.npz [n_neighbors] [n_eigval]

Imports nothing of lrp-audit (that environment has only CoRelAy and its dependencies)."""

from __future__ import annotations

import sys

import numpy as np
from corelay.pipeline.spectral import SpectralEmbedding
from corelay.processor.affinity import SparseKNN
from corelay.processor.embedding import EigenDecomposition


def main() -> None:
    source, target = sys.argv[1], sys.argv[2]
    n_neighbors = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    n_eigval = int(sys.argv[4]) if len(sys.argv) > 4 else 32
    out = {}
    with np.load(source) as rows:
        for which, suffix in (("LM", ""), ("LA", ":LA")):
            pipeline = SpectralEmbedding(
                affinity=SparseKNN(n_neighbors=n_neighbors, symmetric=True),
                embedding=EigenDecomposition(n_eigval=n_eigval, which=which),
            )
            for key in rows.files:
                eigval, _ = pipeline(rows[key].astype(np.float64))
                out[key + suffix] = np.sort(np.asarray(eigval, dtype=np.float64))
    np.savez(target, **out)


if __name__ == "__main__":
    main()
