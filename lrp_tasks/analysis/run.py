"""SpRAy over an audit: plan the classes, run each (one at a time here, or in parallel through any
``map`` the caller hands in, e.g. Ray workers), skip classes already done.

    plan = plan_spray("audits/planted", SpraySpec(classes=[3]))     # checks the request, writes spray.json
    outcomes = run_spray("audits/planted", SpraySpec())              # everything, sequentially
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lrp_tasks.config.analysis import SpraySpec
from lrp_tasks.store import AuditReader, open_audit

from .maps import read_class_rows, samples_by_class
from .results import is_done, prepare_root, remove_class_temporaries, spray_dir, spray_identity, write_class
from .spray import SprayRequestError, spray_maps

MIN_SAMPLES = 3


class NoCommittedShardsError(SprayRequestError):
    """The audit has no committed shard yet: there is nothing to analyse."""


@dataclass
class SprayPlan:
    """What a SpRAy run will do; every field is plain data, so a plan can be shipped to workers."""

    audit_path: str
    spec: dict[str, Any]
    digest: str
    shards: list[int]
    classes: list[int]
    """Classes to compute (not done yet)."""
    done: list[int]
    """Requested classes already finished with this config (skipped)."""
    sizes: dict[int, int]
    notes: list[str] = field(default_factory=list)


def _class_members(reader: AuditReader, by: str, shards: Iterable[int]) -> dict[int, np.ndarray]:
    classes = samples_by_class(reader, by)
    size = int(reader.layout_info["shard_size"])
    keep = np.isin(classes.index.to_numpy() // size, np.fromiter(shards, dtype=np.int64))
    classes = classes[keep]
    return {int(c): np.sort(group.index.to_numpy(np.int64)) for c, group in classes.groupby(classes)}


def plan_spray(audit_path: str, spec: SpraySpec, on_change: str = "refuse") -> SprayPlan:
    """Check the request against the audit and prepare ``analysis/spray`` (see results.py)."""
    reader = open_audit(audit_path)
    shards = sorted(reader.committed_shards)
    if not shards:
        raise NoCommittedShardsError(f"the audit at {audit_path} has no committed shards yet: nothing to analyse")
    n_classes = int(reader.layout_info["n_classes"])
    members = _class_members(reader, spec.by, shards)
    by = "predicted as" if spec.by == "predicted" else "labelled"
    notes: list[str] = []
    if spec.classes is not None:
        wanted = list(dict.fromkeys(spec.classes))
        unknown = [c for c in wanted if not 0 <= c < n_classes]
        if unknown:
            raise SprayRequestError(
                f"unknown class(es) {unknown}: the model has {n_classes} classes (0..{n_classes - 1})"
            )
        for c in wanted:
            n = len(members.get(c, ()))
            if n < MIN_SAMPLES:
                raise SprayRequestError(
                    f"class {c} has {n} committed sample(s) {by} {c}; SpRAy needs at least {MIN_SAMPLES}"
                )
    else:
        wanted = sorted(members)
        small = [c for c in wanted if len(members[c]) < MIN_SAMPLES]
        if small:
            notes.append(f"skipped classes with fewer than {MIN_SAMPLES} samples: {small}")
        wanted = [c for c in wanted if c not in small]
    if isinstance(spec.k, int):
        too_small = {c: len(members[c]) for c in wanted if spec.k >= len(members[c])}
        if too_small:
            detail = ", ".join(f"class {c}: {n} samples" for c, n in too_small.items())
            raise SprayRequestError(f"k={spec.k} clusters is more than the class holds ({detail})")
    identity = spray_identity(spec, reader.audit_id, shards)
    root, digest, kept = prepare_root(audit_path, identity, on_change, wanted if spec.classes is not None else None)
    if kept:
        notes.append(f"kept the results of classes {kept}, computed with another SpRAy config or audit snapshot")
    done = [c for c in wanted if is_done(root, c, digest)]
    return SprayPlan(
        audit_path=str(audit_path),
        spec=spec.model_dump(mode="json"),
        digest=digest,
        shards=shards,
        classes=[c for c in wanted if c not in done],
        done=done,
        sizes={c: len(members[c]) for c in wanted},
        notes=notes,
    )


def spray_class(plan: SprayPlan, cls: int) -> dict[str, Any]:
    """Compute and write one class; returns a small summary (runs in the flow or on a worker)."""
    began = time.perf_counter()
    spec = SpraySpec.model_validate(plan.spec)
    reader = open_audit(plan.audit_path)
    indices = _class_members(reader, spec.by, plan.shards).get(cls, np.zeros(0, np.int64))
    rows, pooled = read_class_rows(reader, indices, spec.pool, spec.normalize)
    result = spray_maps(rows, spec, what=f"class {cls}")
    root = spray_dir(plan.audit_path)
    remove_class_temporaries(root, cls)
    write_class(root, cls, plan.digest, indices, result, spec, pooled)
    stats = result.stats_by_k[result.k]
    top = int(np.argmin(stats.rank))
    return {
        "class": cls,
        "samples": len(indices),
        "k": result.k,
        "eigengap_k": result.eigengap_k,
        "top_cluster": top,
        "top_cluster_size": int(stats.size[top]),
        "top_cluster_score": float(stats.score[top]),
        "seconds": time.perf_counter() - began,
        "notes": result.notes,
    }


Mapper = Callable[[Callable[[SprayPlan, int], dict[str, Any]], SprayPlan, list[int]], list[dict[str, Any]]]


def sequential(
    fn: Callable[[SprayPlan, int], dict[str, Any]], plan: SprayPlan, classes: list[int]
) -> list[dict[str, Any]]:
    return [fn(plan, c) for c in classes]


def run_spray(
    audit_path: str, spec: SpraySpec, on_change: str = "refuse", mapper: Mapper = sequential
) -> dict[str, Any]:
    """Plan, run the pending classes through ``mapper`` and report what was done and skipped."""
    plan = plan_spray(audit_path, spec, on_change)
    outcomes = mapper(spray_class, plan, plan.classes) if plan.classes else []
    return {"classes_run": outcomes, "classes_skipped": plan.done, "notes": plan.notes, "digest": plan.digest}
