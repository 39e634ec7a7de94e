"""Shared builders for the store tests, importable by the test modules and by worker subprocesses."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Any

import numpy as np

from lrp_tasks.audit.summaries import summarize
from lrp_tasks.store import AuditSpec, AuditStore, ShardResult

HERE = pathlib.Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]

SMALL = {
    "n_samples": 10,
    "sample_shape": [3, 4, 4],
    "n_classes": 5,
    "shard_size": 4,
    "chunk_size": 2,
    "config": {"model": "tiny", "composite": "epsilon_plus", "batch_size": 4},
    "weights_digest": "sha256:weights",
    "composite": "EpsilonPlus(epsilon=1e-6)",
    "audit_id": "audit-test",
}


def make_spec(**overrides: Any) -> AuditSpec:
    kwargs = {**SMALL, **overrides}
    kwargs["sample_shape"] = tuple(kwargs["sample_shape"])
    kwargs["layerwise"] = {name: tuple(shape) for name, shape in kwargs.get("layerwise", {}).items()}
    return AuditSpec(**kwargs)


def shard_arrays(spec: AuditSpec, start: int, stop: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic per-sample data: sample i's rows depend only on (i, seed), not on the shard."""
    names = [
        "relevance",
        "logits",
        "input",
        "concepts",
        "concept_channels",
        *(f"layerwise/{n}" for n in spec.layerwise),
    ]
    out: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for i in range(start, stop):
        rng = np.random.default_rng([seed, i])
        out["relevance"].append(rng.standard_normal(spec.relevance_row_shape).astype(np.float32))
        out["logits"].append(rng.standard_normal(spec.n_classes).astype(np.float32))
        out["input"].append(rng.random(spec.sample_shape).astype(np.float32))
        out["concepts"].append(rng.standard_normal((spec.n_concepts, *spec.sample_shape)).astype(np.float32))
        channels = spec.concept_ids if spec.concept_ids is not None else rng.permutation(64)[: spec.n_concepts]
        out["concept_channels"].append(np.asarray(channels, dtype=np.int64))
        for name in spec.layerwise:
            out[f"layerwise/{name}"].append(rng.standard_normal(spec.layerwise_row_shape(name)).astype(np.float32))
    arrays = {k: np.stack(v) for k, v in out.items()}
    arrays["concept_relevance"] = arrays["concepts"].sum(axis=tuple(range(2, arrays["concepts"].ndim)))
    order = np.argsort(-arrays["logits"], axis=1, kind="stable")
    arrays["target"] = order[:, 0] if spec.k == 1 else order[:, : spec.k]
    return arrays


def make_shard(
    spec: AuditSpec, shard_id: int, start: int, stop: int, seed: int = 0, audit_id: str | None = None
) -> ShardResult:
    a = shard_arrays(spec, start, stop, seed)
    n = stop - start
    seed_rel = np.ones(a["target"].shape)
    df = summarize(
        a["relevance"],
        a["logits"],
        a["target"],
        seed_rel,
        labels=np.arange(start, stop) % spec.n_classes,
        sample_index=np.arange(start, stop),
        sample_ids=[f"img/{i:04d}.png" for i in range(start, stop)],
        dataset="tiny",
        shard_id=shard_id,
        audit_id=audit_id or spec.audit_id or "",
    )
    assert len(df) == n * spec.k
    return ShardResult(
        shard_id=shard_id,
        start=start,
        stop=stop,
        relevance=a["relevance"],
        logits=a["logits"],
        target=a["target"],
        summaries=df,
        input=a["input"] if spec.keep_input else None,
        concepts=a["concepts"] if spec.n_concepts else None,
        concept_channels=a["concept_channels"] if spec.n_concepts else None,
        concept_relevance=a["concept_relevance"] if spec.n_concepts else None,
        layerwise={name: a[f"layerwise/{name}"] for name in spec.layerwise} or None,
    )


def write_all(store: AuditStore, seed: int = 0, only: set[int] | None = None) -> None:
    for sid, start, stop in store.plan:
        if only is None or sid in only:
            store.write_shard(make_shard(store.spec, sid, start, stop, seed))


def snapshot(root: str | os.PathLike[str]) -> dict[str, tuple[str, int]]:
    """Every file under root -> (sha256, mtime_ns): equal snapshots mean nothing was touched."""
    snap = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            with open(p, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            snap[os.path.relpath(p, root)] = (digest, os.stat(p).st_mtime_ns)
    return snap


# Worker subprocess -------------------------------------------------------------------------------


def worker_main(args: dict[str, Any]) -> None:
    """Open the audit (resume), wait for the go file if any, write the given shards, exit."""
    go = args.get("go_file")
    if go:
        deadline = time.monotonic() + 60
        while not os.path.exists(go):
            if time.monotonic() > deadline:
                raise SystemExit("go file never appeared")
            time.sleep(0.005)
    spec = make_spec(**args.get("spec", {}))
    store = AuditStore.create_or_open(args["path"], spec, mode="resume", lease=args.get("lease"))
    shards = set(args["shards"])
    write_all(store, seed=args.get("seed", 0), only=shards)


def start_worker(args: dict[str, Any], env_extra: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A real Python process running :func:`worker_main` (so os._exit / SIGKILL are real deaths)."""
    code = (
        "import json, sys; "
        f"sys.path.insert(0, {str(REPO_ROOT)!r}); "
        "from tests.store import store_helpers; "
        "store_helpers.worker_main(json.loads(sys.argv[1]))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env_extra or {})}
    return subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(args)],
        env=env,
        cwd=str(REPO_ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
