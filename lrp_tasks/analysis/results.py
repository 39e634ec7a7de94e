"""SpRAy results in the audit store, under ``<audit>/analysis/spray/``::

    spray.json                      the SpRAy configs in use (digest -> config, audit snapshot)
    samples/class-000003.parquet    one row per sample of class 3: clusters, layout, distances
    clusters/class-000003.parquet   one row per (k, cluster): size, distance, score, rank
    eigenvalues/class-000003.parquet
    arrays/class-000003.npz         spectral embedding, mean maps per cluster, class mean map

Every file is written to a hidden temporary, fsynced and renamed into place; a class's samples part
is written last, so its presence (with the current digest in its metadata) means the class is done.
``pd.read_parquet("<audit>/analysis/spray/samples")`` reads every finished class (pyarrow skips the
hidden temporaries), ready to join to the summaries on ``sample_index``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lrp_tasks.config.analysis import SpraySpec
from lrp_tasks.store.durable import atomic_write_bytes
from lrp_tasks.store.layout import RELEVANCE_ZARR, local_path
from lrp_tasks.store.relevance import read_group_attrs
from lrp_tasks.store.removal import is_staged_name, remove_owned

from .spray import SprayResult

FORMAT = 2
SPRAY_DIR = ("analysis", "spray")
MANIFEST = "spray.json"
METADATA_KEY = b"lrp_audit_spray"
SAMPLES, CLUSTERS, EIGENVALUES, ARRAYS = "samples", "clusters", "eigenvalues", "arrays"
CRASH_HOOK = "LRP_AUDIT_TEST_SPRAY_CRASH_CLASS"
"""Test hook: the process writing this class dies (os._exit) just before the class's samples part,
after its other files: what a kill at the worst moment leaves behind."""


class SprayStoreError(RuntimeError):
    """The SpRAy results of an audit cannot be used as asked (another config, not a local path...)."""


class SprayConfigMismatchError(SprayStoreError):
    """The audit holds SpRAy results of another config or another audit snapshot; never mixed."""


def spray_dir(audit_path: str | os.PathLike[str]) -> Path:
    local = local_path(str(audit_path))
    if local is None:
        raise SprayStoreError(f"SpRAy results are written next to local audits only, not to {audit_path}")
    return Path(local).joinpath(*SPRAY_DIR)


_CLASS_FILE = re.compile(r"^class-\d{6}\.(parquet|npz)$")


def class_file(cls: int, ext: str) -> str:
    return f"class-{cls:06d}.{ext}"


def spray_identity(spec: SpraySpec, audit_id: str, shards: list[int]) -> dict[str, Any]:
    """What SpRAy results depend on: the config (minus the class selection) and the audit snapshot."""
    return {
        "config": spec.model_dump(mode="json", exclude={"classes"}),
        "audit_id": audit_id,
        "committed_shards": sorted(int(s) for s in shards),
    }


def digest_of(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def read_manifest(root: Path) -> dict[str, Any] | None:
    try:
        return json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    parts = []
    old_cfg, new_cfg = old.get("config", {}), new["config"]
    for key in sorted(set(old_cfg) | set(new_cfg)):
        if old_cfg.get(key) != new_cfg.get(key):
            parts.append(f"{key}: {old_cfg.get(key)!r} -> {new_cfg.get(key)!r}")
    if old.get("audit_id") != new["audit_id"]:
        parts.append(f"audit_id: {old.get('audit_id')} -> {new['audit_id']}")
    if old.get("committed_shards") != new["committed_shards"]:
        parts.append(f"committed shards: {len(old.get('committed_shards') or [])} -> {len(new['committed_shards'])}")
    return "; ".join(parts) or "unknown"


def _configs(stored: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """digest -> identity of every config the manifest knows (format 1 knew one)."""
    if stored is None:
        return {}
    configs = dict(stored.get("configs") or {})
    if stored.get("digest") and stored["digest"] not in configs:
        configs[stored["digest"]] = stored.get("identity", {})
    return configs


def stored_classes(root: Path) -> dict[int, str]:
    """class -> digest of every class whose samples part is in place (finished, under some config)."""
    directory = root / SAMPLES
    names = os.listdir(directory) if directory.is_dir() else []
    found: dict[int, str] = {}
    for name in names:
        if name.startswith("class-") and name.endswith(".parquet"):
            cls = int(name[len("class-") : -len(".parquet")])
            digest = class_digest(root, cls)
            if digest is not None:
                found[cls] = digest
    return found


def prepare_root(
    audit_path: str, identity: dict[str, Any], on_change: str, classes: list[int] | None = None
) -> tuple[Path, str, list[int]]:
    """Create or check ``analysis/spray`` for a request on ``classes`` (None: every class).

    Classes finished under the same digest resume. Classes of another config or audit snapshot are
    refused (``on_change="refuse"``), or with ``"recompute"``: a request for every class wipes the old
    results; a request for some classes recomputes those and keeps the other classes' results with
    their own config (listed in the manifest). Returns the root, the digest and the classes kept
    under another config."""
    if on_change not in ("refuse", "recompute"):
        raise ValueError(f"on_change must be 'refuse' or 'recompute', got {on_change!r}")
    root = spray_dir(audit_path)
    digest = digest_of(identity)
    stored = read_manifest(root)
    configs = _configs(stored)
    by_class = {c: d for c, d in stored_classes(root).items() if d in configs}
    other = {c: d for c, d in by_class.items() if d != digest}
    if other:
        if on_change == "refuse":
            first = next((c for c in sorted(other) if classes is None or c in classes), min(other))
            raise SprayConfigMismatchError(
                f"{root} holds SpRAy results of another config or audit snapshot "
                f"({_differences(configs[other[first]], identity)}); rerun with --recompute "
                "(lrp-audit spray) or on_change='recompute' (the spray flow) to replace them"
            )
        if classes is None:
            wipe(root)
            by_class, other = {}, {}
    for sub in (SAMPLES, CLUSTERS, EIGENVALUES, ARRAYS):
        (root / sub).mkdir(parents=True, exist_ok=True)
    kept = sorted(c for c in other if classes is None or c not in classes)
    in_use = set(by_class.values()) | {digest}  # a class being recomputed stays readable until replaced
    body = {
        "format": FORMAT,
        "digest": digest,
        "identity": identity,
        "configs": {d: (identity if d == digest else configs[d]) for d in sorted(in_use)},
    }
    if stored != body:
        atomic_write_bytes(str(root / MANIFEST), json.dumps(body, indent=2, sort_keys=True).encode())
    return root, digest, kept


def wipe(root: Path) -> list[str]:
    """Remove old results, only the files SpRAy writes (its manifest, class files, their temporaries),
    never through a symlink (:func:`~lrp_tasks.store.removal.remove_owned`). Each class's samples part
    goes first, so a reader sees a class whole or not at all. A user's file stays, with its folder;
    the kept paths (relative to the audit) are returned."""
    if not root.is_dir():
        return []
    audit = root.parents[len(SPRAY_DIR) - 1]
    base = "/".join(SPRAY_DIR)
    files: list[str] = []
    for sub in (SAMPLES, CLUSTERS, EIGENVALUES, ARRAYS):
        directory = root / sub
        names = sorted(os.listdir(directory)) if directory.is_dir() and not directory.is_symlink() else []
        files += [f"{base}/{sub}/{n}" for n in names if _is_spray_file(n)]
    files += [f"{base}/{n}" for n in sorted(os.listdir(root)) if n == MANIFEST or _is_temporary(n, MANIFEST)]
    dirs = [f"{base}/{sub}" for sub in (SAMPLES, CLUSTERS, EIGENVALUES, ARRAYS)]
    return remove_owned(str(audit), files, dirs).kept


def _is_temporary(name: str, final: str) -> bool:
    return is_staged_name(name) and name.startswith(f".{final}.")


def _is_spray_file(name: str) -> bool:
    """``class-NNNNNN.parquet`` / ``.npz`` or a temporary of one (what :func:`write_class` writes)."""
    return bool(_CLASS_FILE.match(name[1:].rsplit(".", 2)[0] if is_staged_name(name) else name))


def class_digest(root: Path, cls: int) -> str | None:
    """The digest a finished class was computed under (None: not finished)."""
    path = root / SAMPLES / class_file(cls, "parquet")
    try:
        meta = pq.read_schema(path).metadata or {}
    except (FileNotFoundError, pa.ArrowInvalid):
        return None
    try:
        digest = json.loads(meta.get(METADATA_KEY, b"{}")).get("digest")
    except ValueError:
        return None
    return digest if isinstance(digest, str) else None


def is_done(root: Path, cls: int, digest: str) -> bool:
    return class_digest(root, cls) == digest


def _parquet_bytes(frame: pd.DataFrame, metadata: dict[str, Any] | None = None) -> bytes:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if metadata is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: json.dumps(metadata)})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def sample_frame(cls: int, sample_index: np.ndarray, result: SprayResult, spec: SpraySpec) -> pd.DataFrame:
    """The per-sample table of one class (same columns for every class of one config)."""
    n = len(sample_index)
    rank = result.stats_by_k[result.k].rank
    columns: dict[str, Any] = {
        "sample_index": sample_index.astype(np.int64),
        "class": np.full(n, cls, dtype=np.int64),
        "cluster": result.labels.astype(np.int64),
        "cluster_rank": rank[result.labels].astype(np.int64),
        "k": np.full(n, result.k, dtype=np.int64),
        "eigengap_k": np.full(n, result.eigengap_k, dtype=np.int64),
        "distance_to_centre": result.distance.astype(np.float32),
        "x": (result.layout[:, 0] if result.layout is not None else np.full(n, np.nan)).astype(np.float32),
        "y": (result.layout[:, 1] if result.layout is not None else np.full(n, np.nan)).astype(np.float32),
    }
    for kk in range(spec.k_min, spec.k_max + 1):
        labels = result.labels_by_k.get(kk)
        columns[f"cluster_k{kk}"] = labels.astype(np.int64) if labels is not None else np.full(n, -1, np.int64)
    return pd.DataFrame(columns)


def cluster_frame(cls: int, result: SprayResult) -> pd.DataFrame:
    rows = []
    for kk, stats in sorted(result.stats_by_k.items()):
        for c in range(kk):
            rows.append(
                {
                    "class": cls,
                    "k": kk,
                    "cluster": c,
                    "size": int(stats.size[c]),
                    "distance": float(stats.distance[c]),
                    "score": float(stats.score[c]),
                    "rank": int(stats.rank[c]),
                    "chosen": kk == result.k,
                }
            )
    return pd.DataFrame(rows)


def write_class(
    root: Path,
    cls: int,
    digest: str,
    sample_index: np.ndarray,
    result: SprayResult,
    spec: SpraySpec,
    pooled: tuple[int, int],
) -> None:
    """Write one class's results; the samples part goes last (it marks the class as done)."""
    arrays = {
        "sample_index": sample_index.astype(np.int64),
        "eigenvalues": result.eigenvalues,
        "eigenvectors": result.eigenvectors,
        "class_mean": result.class_mean.reshape(pooled),
        "pooled_shape": np.asarray(pooled, dtype=np.int64),
    }
    for kk, stats in result.stats_by_k.items():
        arrays[f"mean_maps_k{kk}"] = stats.mean_maps.reshape(kk, *pooled)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(str(root / ARRAYS / class_file(cls, "npz")), buffer.getvalue())
    eig = pd.DataFrame(
        {
            "class": np.full(len(result.eigenvalues), cls, dtype=np.int64),
            "index": np.arange(len(result.eigenvalues), dtype=np.int64),
            "eigenvalue": result.eigenvalues.astype(np.float64),
        }
    )
    atomic_write_bytes(str(root / EIGENVALUES / class_file(cls, "parquet")), _parquet_bytes(eig))
    atomic_write_bytes(str(root / CLUSTERS / class_file(cls, "parquet")), _parquet_bytes(cluster_frame(cls, result)))
    if os.environ.get(CRASH_HOOK) == str(cls):
        os._exit(17)
    meta = {"digest": digest, "class": cls, "k": result.k, "eigengap_k": result.eigengap_k}
    samples = sample_frame(cls, sample_index, result, spec)
    atomic_write_bytes(str(root / SAMPLES / class_file(cls, "parquet")), _parquet_bytes(samples, meta))


def remove_class_temporaries(root: Path, cls: int) -> None:
    """Temporaries a killed writer of this class left behind (hidden names starting with the file's)."""
    for sub, ext in ((SAMPLES, "parquet"), (CLUSTERS, "parquet"), (EIGENVALUES, "parquet"), (ARRAYS, "npz")):
        prefix = f".{class_file(cls, ext)}."
        directory = root / sub
        for name in os.listdir(directory) if directory.is_dir() else []:
            if name.startswith(prefix):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(directory / name)


@dataclass
class SprayResults:
    """The finished classes of an audit's SpRAy results (see :func:`read_spray`)."""

    root: Path
    manifest: dict[str, Any]
    samples: pd.DataFrame
    clusters: pd.DataFrame
    eigenvalues: pd.DataFrame
    digests: dict[int, str] = field(default_factory=dict)
    """class -> digest of the config it was computed under (several after a partial recompute)."""

    @property
    def config(self) -> dict[str, Any]:
        """The SpRAy config of the finished classes (refused when they hold several: see config_of)."""
        used = sorted(set(self.digests.values()))
        if len(used) > 1:
            groups = "; ".join(f"{sorted(c for c, d in self.digests.items() if d == u)}" for u in used)
            raise SprayStoreError(
                f"the classes hold results of {len(used)} SpRAy configs ({groups}); use config_of(class)"
            )
        digest = used[0] if used else self.manifest["digest"]
        return dict(_configs(self.manifest)[digest]["config"])

    def config_of(self, cls: int) -> dict[str, Any]:
        """The SpRAy config a finished class was computed under."""
        if cls not in self.digests:
            raise KeyError(f"no finished SpRAy results for class {cls}; finished: {self.classes}")
        return dict(_configs(self.manifest)[self.digests[cls]]["config"])

    @property
    def classes(self) -> list[int]:
        return sorted(self.digests)

    def arrays(self, cls: int) -> dict[str, np.ndarray]:
        """Spectral embedding (``eigenvectors``), ``class_mean`` and ``mean_maps_k<k>`` of a class."""
        if cls not in self.classes:
            raise KeyError(f"no finished SpRAy results for class {cls}; finished: {self.classes}")
        with np.load(self.root / ARRAYS / class_file(cls, "npz")) as data:
            return {key: data[key] for key in data.files}

    def mean_maps(self, cls: int, k: int | None = None) -> np.ndarray:
        """``(k, h, w)`` mean pooled map of each cluster (default: the class's chosen k)."""
        if k is None:
            k = int(self.samples.loc[self.samples["class"] == cls, "k"].iloc[0])
        arrays = self.arrays(cls)
        key = f"mean_maps_k{k}"
        if key not in arrays:
            raise KeyError(f"class {cls} has no clustering with k={k}")
        return arrays[key]


def read_spray(audit_path: str | os.PathLike[str]) -> SprayResults:
    """Read the finished classes of an audit's SpRAy results."""
    root = spray_dir(audit_path)
    manifest = read_manifest(root)
    if manifest is None:
        raise SprayStoreError(f"no SpRAy results in {audit_path} (run `lrp-audit spray {audit_path}`)")
    built_for = (manifest.get("identity") or {}).get("audit_id")
    current = read_group_attrs(str(root.parents[1] / RELEVANCE_ZARR)).get("audit_id")
    if built_for != current:
        raise SprayStoreError(
            f"the SpRAy results in {root} were built from audit {built_for!r}, not the audit now at {audit_path} "
            f"({current!r}; re-run with --fresh?): stale. Run `lrp-audit spray {audit_path} --recompute`."
        )
    configs = _configs(manifest)
    digests = {c: d for c, d in stored_classes(root).items() if d in configs}
    done = sorted(digests)

    def frame(sub: str) -> pd.DataFrame:
        paths = [root / sub / class_file(c, "parquet") for c in done]
        return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True) if paths else pd.DataFrame()

    return SprayResults(root, manifest, frame(SAMPLES), frame(CLUSTERS), frame(EIGENVALUES), digests)
