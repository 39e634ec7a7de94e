"""Can storage keep up with a GPU? The audit store against ``np.save`` + fsync of the same bytes.

Writes N relevance maps (3x224x224 by default: ImageNet-sized inputs) shard by shard through
:class:`AuditStore`, stored as float32 and as float16, with the per-sample summaries computed inside
the timed part as the worker does (``+ summaries``) and, for reference, precomputed. The bar is what
any durable writer must pay: ``np.save`` of the same bytes (float16 bytes for float16 storage), one
file per shard, each fsynced, in the same directory. All variants run in interleaved rounds
(round-robin, each into a fresh directory), so they see the same machine load; best and median of
the rounds are printed, and the ratio store / (np.save + fsync) of the best times.

    .venv/bin/python benchmarks/store.py                   # 512 maps 3x224x224, shards of 64, 5 rounds
    .venv/bin/python benchmarks/store.py --shape 3 32 32 --n 10000 --shard-size 1000   # small maps
    .venv/bin/python benchmarks/store.py --data smooth     # heatmap-like maps (compressible)
    .venv/bin/python benchmarks/store.py --baseline DIR    # also time DIR/lrp_tasks (e.g. an older
                                                           # checkout), interleaved with this one
    .venv/bin/python benchmarks/store.py --summary-threads 1   # statistics on one thread

Statistics use ``LRP_AUDIT_SUMMARY_THREADS`` threads (default: the CPUs this process may use, at
most 8); ``--summary-threads`` sets it for the run.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lrp_tasks.audit.summaries
import lrp_tasks.store


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


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def interleaved(rounds: int, runs: dict[str, tuple[Callable[[], None], Callable[[], None]]]) -> dict[str, list[float]]:
    """Wall times of each ``(setup, fn)`` over ``rounds`` rounds; within a round the entries run one
    after the other (round-robin), so slow phases of a shared machine hit all of them alike."""
    times: dict[str, list[float]] = {key: [] for key in runs}
    for _ in range(rounds):
        for key, (setup, fn) in runs.items():
            setup()
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--shape", type=int, nargs="+", default=[3, 224, 224])
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--shard-size", type=int, default=64)
    ap.add_argument("--data", choices=("random", "smooth"), default="random")
    ap.add_argument("--dtypes", choices=("float32", "float16"), nargs="+", default=["float32", "float16"])
    ap.add_argument("--compression", choices=("lz4", "zstd", "none"), default="lz4")
    ap.add_argument("--repeat", type=int, default=5, help="interleaved rounds")
    ap.add_argument("--summary-threads", type=int, default=None, help="sets LRP_AUDIT_SUMMARY_THREADS")
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
    if args.summary_threads is not None:
        os.environ["LRP_AUDIT_SUMMARY_THREADS"] = str(args.summary_threads)

    impls = [Impl("", lrp_tasks.store, lrp_tasks.audit.summaries)]
    if args.baseline:
        impls.append(load_baseline(args.baseline))
    shape = tuple(args.shape)
    rel, logits, target = make_data(args.n, shape, args.classes, args.data)
    as_stored = {"float32": rel, "float16": rel.astype(np.float16)}  # the bytes np.save writes
    plan = lrp_tasks.store.plan_shards(args.n, args.shard_size)
    root = Path(args.dir or tempfile.mkdtemp(prefix="lrp-store-bench-"))
    root.mkdir(parents=True, exist_ok=True)

    def summaries_of(impl: Impl, sid: int, a: int, b: int) -> Any:
        return impl.summary_rows(
            rel[a:b], logits[a:b], target[a:b], np.ones(b - a), None, np.arange(a, b), None, "bench", sid, "bench"
        )

    runs: dict[str, tuple[Callable[[], None], Callable[[], None]]] = {}
    dirs: dict[str, Path] = {}
    sizes: dict[str, int] = {}
    for dtype in args.dtypes:
        npy_dir = root / f"npy-{dtype}"

        def fresh_npy(d: Path = npy_dir) -> None:
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir()

        def np_save_fsync(d: Path = npy_dir, data: np.ndarray = as_stored[dtype]) -> None:
            for sid, a, b in plan:
                with open(d / f"shard-{sid}.npy", "wb") as f:
                    np.save(f, data[a:b])
                    f.flush()
                    os.fsync(f.fileno())
            fd = os.open(d, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        key = f"np.save + fsync {dtype}"
        runs[key], dirs[key] = (fresh_npy, np_save_fsync), npy_dir
        for impl in impls:
            frames = {sid: summaries_of(impl, sid, a, b) for sid, a, b in plan}
            for with_summaries in (False, True):
                label = f"{impl.label} AuditStore {dtype} {args.compression}".strip()
                label += " + summaries" if with_summaries else " (summaries precomputed)"
                audit = root / f"audit-{impl.label or 'this'}-{dtype}-{with_summaries}"
                spec = impl.store.AuditSpec(
                    n_samples=args.n,
                    sample_shape=shape,
                    n_classes=args.classes,
                    shard_size=args.shard_size,
                    dtype=dtype,
                    compression=args.compression,
                    config={"bench": True},
                    audit_id="bench",
                )

                def fresh(audit: Path = audit) -> None:
                    shutil.rmtree(audit, ignore_errors=True)

                def write(audit: Path = audit, spec: Any = spec, impl: Impl = impl, pre: dict | None = None) -> None:
                    store = impl.store.AuditStore.create_or_open(audit, spec, mode="resume")
                    for sid, a, b in plan:
                        summaries = pre[sid] if pre else summaries_of(impl, sid, a, b)
                        shard = impl.store.ShardResult(sid, a, b, rel[a:b], logits[a:b], target[a:b], summaries)
                        store.write_shard(shard)

                runs[label] = (fresh, functools.partial(write, pre=None if with_summaries else frames))
                dirs[label] = audit
    for impl in impls:

        def summaries_only(impl: Impl = impl) -> None:
            for sid, a, b in plan:
                summaries_of(impl, sid, a, b)

        runs[f"{impl.label} summaries alone".strip()] = (lambda: None, summaries_only)

    times = interleaved(args.repeat, runs)
    for key, d in dirs.items():
        sizes[key] = du(d)
        shutil.rmtree(d, ignore_errors=True)

    mb = rel.nbytes / args.n / 1e6
    print(
        f"data: {args.n} maps {shape} ({mb:.2f} MB as float32, {args.data}), shards of {args.shard_size}, "
        f"{args.repeat} interleaved rounds, summary threads {lrp_tasks.audit.summaries._summary_threads()}, "
        f"dir {root}{', fsync DISABLED (not durable)' if args.no_fsync else ''}"
    )
    print(f"{'writer':<58}{'best maps/s':>12}{'median':>10}{'vs np.save+fsync':>18}{'MB on disk':>12}")
    for key, ts in times.items():
        dtype = next((d for d in args.dtypes if d in key), None)
        bar = f"np.save + fsync {dtype}"
        ratio = f"{min(times[bar]) / min(ts):.2f}" if dtype and bar in times and not key.startswith("np.") else ""
        on_disk = f"{sizes[key] / 1e6:.1f}" if key in sizes else ""
        print(f"{key:<58}{args.n / min(ts):>12,.0f}{args.n / statistics.median(ts):>10,.0f}{ratio:>18}{on_disk:>12}")
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
