"""SpRAy on one class of N synthetic 32×32 relevance maps: seconds and peak memory for each N.

    .venv/bin/python benchmarks/spray.py                       # N = 25k, 50k, 100k, 200k
    .venv/bin/python benchmarks/spray.py --sizes 5000,10000    # smaller, on a busy machine
    .venv/bin/python benchmarks/spray.py --corelay .venv-corelay/bin/python --corelay-max 20000

Each N runs in its own process (peak RSS = that process's ``ru_maxrss``, the maps included: N × 1024
float32 = 0.8 GiB at 200k). The maps mix six strategies (a blob at one of six places, jittered by ±2
pixels, varying strength, noise); the script reports the steps' seconds, the k the eigengap picked and
how pure the clusters are against the strategies. Growth: the exponent b of seconds ≈ a·N^b fitted
over the sizes (1 = linear). With ``--corelay``, CoRelAy's SpectralEmbedding (dense N×N distances) runs
on the same maps in that interpreter for N up to ``--corelay-max``, interleaved with ours.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = [(6, 6), (6, 25), (25, 6), (25, 25), (16, 16), (3, 16)]


def synthetic_maps(n: int, seed: int = 0, block: int = 16384) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 1024)`` float32 rows (L2-normalized 32×32 maps) and the strategy of each, made in blocks."""
    rng = np.random.default_rng(seed)
    strategy = rng.integers(0, len(STRATEGIES), n)
    rows = np.empty((n, 1024), dtype=np.float32)
    yy, xx = np.mgrid[0:32, 0:32]
    for start in range(0, n, block):
        s = strategy[start : start + block]
        m = len(s)
        centre = np.asarray(STRATEGIES, dtype=np.float32)[s] + rng.integers(-2, 3, (m, 2))
        strength = rng.uniform(0.5, 1.5, m).astype(np.float32)
        d2 = (yy[None] - centre[:, 0, None, None]) ** 2 + (xx[None] - centre[:, 1, None, None]) ** 2
        maps = strength[:, None, None] * np.exp(-d2 / 8.0) + rng.normal(0, 0.15, (m, 32, 32))
        block_rows = maps.reshape(m, 1024).astype(np.float32)
        block_rows /= np.linalg.norm(block_rows, axis=1, keepdims=True)
        rows[start : start + m] = block_rows
    return rows, strategy


def purity(labels: np.ndarray, truth: np.ndarray) -> float:
    """Share of samples in the majority strategy of their cluster."""
    total = 0
    for c in np.unique(labels):
        total += np.bincount(truth[labels == c]).max()
    return total / len(labels)


def run_ours(n: int) -> dict:
    sys.path.insert(0, str(ROOT))
    from lrp_tasks.analysis import SpraySpec, spray_maps

    rows, truth = synthetic_maps(n)
    began = time.perf_counter()
    result = spray_maps(rows, SpraySpec())
    seconds = time.perf_counter() - began
    return {
        "n": n,
        "seconds": round(seconds, 2),
        "steps": {k: round(v, 2) for k, v in result.seconds.items()},
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        "k": result.k,
        "purity": round(purity(result.labels, truth), 4),
        "eigenvalues": result.eigenvalues.tolist(),
    }


def run_corelay(n: int) -> dict:
    """CoRelAy 1.0's SpectralEmbedding on the same rows (its default: dense euclidean distances)."""
    from corelay.pipeline.spectral import SpectralEmbedding

    rows, _ = synthetic_maps(n)
    began = time.perf_counter()
    eigval, _ = SpectralEmbedding()(rows.astype(np.float64))
    seconds = time.perf_counter() - began
    return {
        "n": n,
        "seconds": round(seconds, 2),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        "eigenvalues": np.sort(np.asarray(eigval)).tolist(),
    }


def child(python: str, which: str, n: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [python, __file__, "--child", which, "--sizes", str(n)], capture_output=True, text=True, env=env, cwd=ROOT
    )
    if out.returncode != 0:
        return {"n": n, "error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="25000,50000,100000,200000")
    parser.add_argument("--corelay", help="python of an environment with corelay installed (.venv-corelay)")
    parser.add_argument("--corelay-max", type=int, default=20000, help="largest N given to CoRelAy")
    parser.add_argument("--child", choices=["ours", "corelay"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.child:
        fn = run_ours if args.child == "ours" else run_corelay
        print(json.dumps(fn(sizes[0])))
        return
    ours = []
    for n in sizes:
        r = child(sys.executable, "ours", n)
        ours.append(r)
        line = {k: v for k, v in r.items() if k != "eigenvalues"}
        print(f"lrp-audit SpRAy  {json.dumps(line)}", flush=True)
        if args.corelay and n <= args.corelay_max:
            c = child(args.corelay, "corelay", n)
            if "eigenvalues" in c and "eigenvalues" in r:
                c["max_eigenvalue_difference"] = float(np.max(np.abs(np.subtract(c["eigenvalues"], r["eigenvalues"]))))
            print(f"CoRelAy          {json.dumps({k: v for k, v in c.items() if k != 'eigenvalues'})}", flush=True)
    ok = [r for r in ours if "seconds" in r]
    if len(ok) >= 2:
        slope = np.polyfit(np.log([r["n"] for r in ok]), np.log([r["seconds"] for r in ok]), 1)[0]
        print(f"growth exponent (seconds ~ N^b): b = {slope:.2f}")
        print(f"peak RSS at N={ok[-1]['n']}: {ok[-1]['peak_rss_gib']} GiB")


if __name__ == "__main__":
    main()
