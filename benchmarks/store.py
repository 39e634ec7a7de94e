"""Audit store write throughput against a bare ``np.save`` of the same relevance maps.

Writes N relevance maps (float32 data, 3x32x32 by default) with logits, targets and summaries through
:class:`AuditStore` (stored as float32 and as float16) and compares maps/s with ``np.save`` of the same
array, in one run, on the same disk. Summaries are computed before the timed part (the pipeline computes
them next to LRP); their own throughput is printed separately.

    .venv/bin/python benchmarks/store.py                   # 10,000 maps, shards of 1,000
    .venv/bin/python benchmarks/store.py --data smooth     # heatmap-like maps (compressible)

Timings are the best of ``--repeat`` runs, each into a fresh directory.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lrp_tasks.store import AuditSpec, AuditStore, ShardResult, plan_shards
from lrp_tasks.summaries import summarize


def make_data(n: int, shape: tuple[int, ...], n_classes: int, kind: str, seed: int = 0):
    """Relevance maps, logits and targets. 'random' is incompressible noise (worst case for the store);
    'smooth' mimics heatmaps: a few blurred blobs, mostly near-zero values, rounded noise."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        rel = rng.standard_normal((n, *shape), dtype=np.float32)
    else:
        c, h, w = shape
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        rel = np.zeros((n, c, h, w), np.float32)
        for _ in range(3):
            cy, cx = rng.uniform(0, h, (n, 1, 1, 1)), rng.uniform(0, w, (n, 1, 1, 1))
            amp = rng.normal(0, 1, (n, c, 1, 1)).astype(np.float32)
            rel += amp * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0).astype(np.float32)
        rel += np.round(rng.standard_normal(rel.shape).astype(np.float32) * 64) / 4096
    logits = rng.standard_normal((n, n_classes)).astype(np.float32)
    return rel, logits, logits.argmax(axis=1)


def best_of(repeat: int, setup: Callable[[], None], fn: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(repeat):
        setup()
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--shape", type=int, nargs="+", default=[3, 32, 32])
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--shard-size", type=int, default=1000)
    ap.add_argument("--data", choices=("random", "smooth"), default="random")
    ap.add_argument("--compression", choices=("lz4", "zstd", "none"), nargs="+", default=["lz4", "none"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where to write (default: a temporary directory)")
    args = ap.parse_args()

    shape = tuple(args.shape)
    rel, logits, target = make_data(args.n, shape, args.classes, args.data)
    plan = plan_shards(args.n, args.shard_size)
    root = Path(args.dir or tempfile.mkdtemp(prefix="lrp-store-bench-"))
    root.mkdir(parents=True, exist_ok=True)

    frames: dict[int, pd.DataFrame] = {}

    def summarize_all() -> None:
        for sid, a, b in plan:
            frames[sid] = summarize(
                rel[a:b],
                logits[a:b],
                target[a:b],
                np.ones(b - a),
                None,
                np.arange(a, b),
                None,
                "bench",
                sid,
                "bench",
            )

    t_summ = best_of(args.repeat, lambda: None, summarize_all)

    npy = root / "relevance.npy"

    def clear_npy() -> None:
        npy.unlink(missing_ok=True)

    def np_save() -> None:
        np.save(npy, rel)

    def np_save_fsync() -> None:
        with open(npy, "wb") as f:
            np.save(f, rel)
            f.flush()
            os.fsync(f.fileno())

    t_np = best_of(args.repeat, clear_npy, np_save)
    t_np_sync = best_of(args.repeat, clear_npy, np_save_fsync)
    npy_bytes = npy.stat().st_size
    clear_npy()

    print(
        f"data: {args.n} maps {shape} float32 ({args.data}), shards of {args.shard_size}, "
        f"best of {args.repeat}, dir {root}"
    )
    print(f"summarize (not timed below): {args.n / t_summ:,.0f} maps/s")
    print(f"{'writer':<34}{'maps/s':>10}{'vs np.save':>12}{'vs save+fsync':>15}{'MB on disk':>12}")
    print(
        f"{'np.save (page cache)':<34}{args.n / t_np:>10,.0f}{1:>12.2f}{t_np_sync / t_np:>15.2f}"
        f"{npy_bytes / 1e6:>12.1f}"
    )
    print(
        f"{'np.save + fsync':<34}{args.n / t_np_sync:>10,.0f}{t_np / t_np_sync:>12.2f}{1:>15.2f}"
        f"{npy_bytes / 1e6:>12.1f}"
    )

    for compression, dtype in [(c, d) for c in args.compression for d in ("float32", "float16")]:
        audit = root / f"audit-{dtype}-{compression}"
        spec = AuditSpec(
            n_samples=args.n,
            sample_shape=shape,
            n_classes=args.classes,
            shard_size=args.shard_size,
            dtype=dtype,
            compression=compression,
            config={"bench": True},
            audit_id="bench",
        )
        shards = [ShardResult(sid, a, b, rel[a:b], logits[a:b], target[a:b], frames[sid]) for sid, a, b in plan]

        def fresh(audit: Path = audit) -> None:
            shutil.rmtree(audit, ignore_errors=True)

        def write(audit: Path = audit, spec: AuditSpec = spec, shards: list[ShardResult] = shards) -> None:
            store = AuditStore.create_or_open(audit, spec, mode="resume")
            for shard in shards:
                store.write_shard(shard)

        t = best_of(args.repeat, fresh, write)
        label = f"AuditStore {dtype} {compression}"
        print(f"{label:<34}{args.n / t:>10,.0f}{t_np / t:>12.2f}{t_np_sync / t:>15.2f}{du(audit) / 1e6:>12.1f}")
        fresh()
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
