"""Audit store write throughput against a bare ``np.save`` of the same relevance maps.

Writes N relevance maps (float32 data, 3x32x32 by default) with logits, targets and summaries through
:class:`AuditStore` (stored as float32 and as float16) and compares maps/s with ``np.save`` of the same
array, without and with fsync, in one run, on the same disk. The plain store rows take summaries
computed before the timed part; the ``+ summaries`` row computes them inside it, shard by shard, as the
pipeline does. Summary throughput alone is printed first.

    .venv/bin/python benchmarks/store.py                   # 10,000 maps, shards of 1,000
    .venv/bin/python benchmarks/store.py --data smooth     # heatmap-like maps (compressible)
    .venv/bin/python benchmarks/store.py --baseline DIR    # also time DIR/lrp_tasks (e.g. an older
                                                           # checkout), interleaved with this one

Timings are the best of ``--repeat`` runs, each into a fresh directory; with ``--baseline`` the runs of
the two versions alternate, so both see the same machine load.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lrp_tasks.store
import lrp_tasks.summaries


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


class Impl:
    """One version of the package: its store and summaries modules."""

    def __init__(self, label: str, store: ModuleType, summaries: ModuleType) -> None:
        self.label = label
        self.store = store
        self.summaries = summaries
        # The fastest summary builder the version has (older ones only return DataFrames).
        self.summary_rows = getattr(summaries, "summary_table", summaries.summarize)


def load_baseline(checkout: str) -> Impl:
    """Import ``<checkout>/lrp_tasks`` under another name, next to this checkout's package."""
    pkg = Path(checkout).resolve() / "lrp_tasks"
    spec = importlib.util.spec_from_file_location(
        "lrp_tasks_baseline", pkg / "__init__.py", submodule_search_locations=[str(pkg)]
    )
    if spec is None or spec.loader is None:
        raise SystemExit(f"no lrp_tasks package under {checkout}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["lrp_tasks_baseline"] = module
    spec.loader.exec_module(module)
    return Impl(
        "baseline",
        importlib.import_module("lrp_tasks_baseline.store"),
        importlib.import_module("lrp_tasks_baseline.summaries"),
    )


def best_of(repeat: int, runs: dict[str, tuple[Callable[[], None], Callable[[], None]]]) -> dict[str, float]:
    """Best wall time of each ``(setup, fn)``; the runs of different entries alternate."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):
        for key, (setup, fn) in runs.items():
            setup()
            t0 = time.perf_counter()
            fn()
            best[key] = min(best[key], time.perf_counter() - t0)
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
    ap.add_argument("--baseline", default=None, help="a checkout whose lrp_tasks is timed alongside this one")
    ap.add_argument(
        "--no-fsync",
        action="store_true",
        help="diagnostic only: make os.fsync a no-op (nothing is durable) to see the CPU cost of each writer",
    )
    args = ap.parse_args()
    if args.no_fsync:
        os.fsync = lambda fd: None

    impls = [Impl("", lrp_tasks.store, lrp_tasks.summaries)]
    if args.baseline:
        impls.append(load_baseline(args.baseline))
    shape = tuple(args.shape)
    rel, logits, target = make_data(args.n, shape, args.classes, args.data)
    plan = lrp_tasks.store.plan_shards(args.n, args.shard_size)
    root = Path(args.dir or tempfile.mkdtemp(prefix="lrp-store-bench-"))
    root.mkdir(parents=True, exist_ok=True)

    def summaries_of(impl: Impl, rows: Callable[..., Any], sid: int, a: int, b: int) -> Any:
        return rows(
            rel[a:b], logits[a:b], target[a:b], np.ones(b - a), None, np.arange(a, b), None, "bench", sid, "bench"
        )

    summary_runs: dict[str, tuple[Callable[[], None], Callable[[], None]]] = {}
    for impl in impls:
        builders = {"summarize (DataFrame)": impl.summaries.summarize}
        if impl.summary_rows is not impl.summaries.summarize:
            builders["summary_table (Arrow)"] = impl.summary_rows
        for name, fn in builders.items():

            def run(impl: Impl = impl, fn: Callable[..., Any] = fn) -> None:
                for sid, a, b in plan:
                    summaries_of(impl, fn, sid, a, b)

            summary_runs[f"{impl.label} {name}".strip()] = (lambda: None, run)
    t_summ = best_of(args.repeat, summary_runs)

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

    t_np = best_of(args.repeat, {"np": (clear_npy, np_save)})["np"]
    t_np_sync = best_of(args.repeat, {"np": (clear_npy, np_save_fsync)})["np"]
    npy_bytes = npy.stat().st_size
    clear_npy()

    print(
        f"data: {args.n} maps {shape} float32 ({args.data}), shards of {args.shard_size}, "
        f"best of {args.repeat}, dir {root}{', fsync DISABLED (not durable)' if args.no_fsync else ''}"
    )
    for name, t in t_summ.items():
        print(f"{name} (not timed below): {args.n / t:,.0f} maps/s")
    print(f"{'writer':<44}{'maps/s':>10}{'vs np.save':>12}{'vs save+fsync':>15}{'MB on disk':>12}")

    def row(label: str, t: float, nbytes: int) -> None:
        print(f"{label:<44}{args.n / t:>10,.0f}{t_np / t:>12.2f}{t_np_sync / t:>15.2f}{nbytes / 1e6:>12.1f}")

    row("np.save (page cache)", t_np, npy_bytes)
    row("np.save + fsync", t_np_sync, npy_bytes)

    cases = [(c, d, False) for c in args.compression for d in ("float32", "float16")]
    cases.append((args.compression[0], "float32", True))
    for compression, dtype, with_summaries in cases:
        runs, dirs = {}, {}
        for impl in impls:
            label = f"{impl.label} AuditStore {dtype} {compression}{' + summaries' if with_summaries else ''}".strip()
            audit = root / f"audit-{impl.label or 'this'}-{dtype}-{compression}"
            spec = impl.store.AuditSpec(
                n_samples=args.n,
                sample_shape=shape,
                n_classes=args.classes,
                shard_size=args.shard_size,
                dtype=dtype,
                compression=compression,
                config={"bench": True},
                audit_id="bench",
            )
            frames = (
                {} if with_summaries else {sid: summaries_of(impl, impl.summary_rows, sid, a, b) for sid, a, b in plan}
            )

            def fresh(audit: Path = audit) -> None:
                shutil.rmtree(audit, ignore_errors=True)

            def write(audit: Path = audit, spec: Any = spec, impl: Impl = impl, frames: dict = frames) -> None:
                store = impl.store.AuditStore.create_or_open(audit, spec, mode="resume")
                for sid, a, b in plan:
                    summaries = frames[sid] if frames else summaries_of(impl, impl.summary_rows, sid, a, b)
                    shard = impl.store.ShardResult(sid, a, b, rel[a:b], logits[a:b], target[a:b], summaries)
                    store.write_shard(shard)

            runs[label] = (fresh, write)
            dirs[label] = audit
        for label, t in best_of(args.repeat, runs).items():
            row(label, t, du(dirs[label]))
            shutil.rmtree(dirs[label], ignore_errors=True)
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
