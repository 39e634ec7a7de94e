"""Checking a store against its commit records, and withdrawing the commit of damaged shards.

Two depths. *Quick* (what ``run`` does before it skips committed shards): every committed shard's
Parquet part and every Zarr chunk of its rows exists, is non-empty and has the size its commit record
gives. *Deep* (``lrp-audit verify``): besides, every part is read (row count, sample ids and shard id
against the plan, sha256 against the record) and every chunk is read (CRC-32 against the record)
and decoded with its array's codecs. A damaged shard is *un-committed* by deleting its part (then
its record): it stops counting at once for readers, and the next run computes it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import zarr

from .claim import lock_store
from .directory import require_audit_dir
from .durable import fsync_path
from .errors import NotAnAuditError
from .layout import MANIFEST_DIR, SUMMARIES_DIR, AuditLayout, parse_part_name, parse_record_name, part_name, record_name
from .manifest import read_records
from .relevance import CONCEPT_IDS, LAYERWISE
from .removal import Removal, is_old_temp, remove_owned
from .summaries_io import committed_part_ids, part_metadata


@dataclass
class VerifyReport:
    """What :func:`check_committed_shards` found."""

    path: str
    deep: bool
    shards: int = 0
    committed: list[int] = field(default_factory=list)
    damaged: dict[int, list[str]] = field(default_factory=dict)
    """Problems of each damaged committed shard: these shards are wrong and must be redone."""
    store_problems: list[str] = field(default_factory=list)
    """Problems outside the shards (foreign files in summaries/), which the store does not fix."""
    notes: list[str] = field(default_factory=list)
    """Harmless findings that the next run tidies (records without part, parts without record)."""

    @property
    def ok(self) -> bool:
        return not self.damaged and not self.store_problems


def _sample_arrays(group: Any) -> dict[str, Any]:
    """Arrays written shard by shard (sample axis first), by path inside the group."""
    arrays = {name: arr for name, arr in group.arrays() if name != CONCEPT_IDS}
    if LAYERWISE in group:
        arrays.update({f"{LAYERWISE}/{name}": arr for name, arr in group[LAYERWISE].arrays()})
    return arrays


def _chunk_rows(arr: Any, start: int, stop: int) -> list[tuple[str, int, int]]:
    chunk = int(arr.chunks[0])
    tail = (0,) * (arr.ndim - 1)
    return [
        (arr.metadata.encode_chunk_key((c, *tail)), c * chunk, min((c + 1) * chunk, int(arr.shape[0])))
        for c in range(start // chunk, (stop - 1) // chunk + 1)
    ]


def _check_shard(
    layout: AuditLayout,
    arrays: dict[str, Any],
    sid: int,
    start: int,
    stop: int,
    k: int,
    part: str,
    record: dict[str, Any] | None,
    deep: bool,
) -> list[str]:
    problems: list[str] = []
    files = (record or {}).get("chunk_files") or {}
    expected_rows = (stop - start) * k
    if record is not None:
        if (record.get("start"), record.get("stop")) != (start, stop):
            problems.append(f"record covers samples {record.get('start')}:{record.get('stop')}, plan {start}:{stop}")
        if record.get("rows") not in (None, -1, expected_rows):
            problems.append(f"record has {record.get('rows')} rows, expected {expected_rows}")
    try:
        size = os.path.getsize(part)
    except FileNotFoundError:
        return [f"Parquet part {os.path.basename(part)} vanished"]
    want = ((record or {}).get("parquet") or {}).get("bytes")
    if size == 0 or (want is not None and size != want):
        problems.append(f"Parquet part {os.path.basename(part)} has {size} bytes, its record says {want}")
    elif deep:
        problems += _check_part(part, sid, start, stop, k, record)
    for name, arr in arrays.items():
        for key, lo, hi in _chunk_rows(arr, start, stop):
            full = f"{name}/{key}"
            path = os.path.join(layout.zarr_path, *full.split("/"))
            try:
                size = os.path.getsize(path)
            except FileNotFoundError:
                problems.append(f"chunk {full} is missing")
                continue
            recorded = files.get(full) or {}
            if size == 0 or ("bytes" in recorded and size != recorded["bytes"]):
                problems.append(f"chunk {full} has {size} bytes, its record says {recorded.get('bytes', '> 0')}")
                continue
            if deep:
                problems += _check_chunk(arr, full, path, lo, hi, recorded)
    return problems


def _check_part(part: str, sid: int, start: int, stop: int, k: int, record: dict[str, Any] | None) -> list[str]:
    name = os.path.basename(part)
    try:
        with open(part, "rb") as f:
            raw = f.read()
        sha = (record or {}).get("parquet", {}).get("sha256")
        if sha and hashlib.sha256(raw).hexdigest() != sha:
            return [f"Parquet part {name} differs from its record (sha256)"]
        table = pq.read_table(part, columns=["sample_index", "shard_id"])
    except Exception as exc:
        return [f"Parquet part {name} is unreadable: {type(exc).__name__}: {exc}"]
    index = table.column("sample_index").to_numpy()
    if not np.array_equal(index, np.repeat(np.arange(start, stop), k)):
        return [f"Parquet part {name} has sample ids other than {start}..{stop - 1} ({table.num_rows} rows)"]
    if set(table.column("shard_id").to_pylist()) != {sid}:
        return [f"Parquet part {name} carries shard ids {sorted(set(table.column('shard_id').to_pylist()))}"]
    return []


def _check_chunk(arr: Any, full: str, path: str, lo: int, hi: int, recorded: dict[str, Any]) -> list[str]:
    if "crc32" in recorded:
        with open(path, "rb") as f:
            if zlib.crc32(f.read()) != recorded["crc32"]:
                return [f"chunk {full} differs from its record (CRC-32)"]
    try:
        arr[lo:hi]
    except Exception as exc:
        return [f"chunk {full} cannot be decoded: {type(exc).__name__}: {exc}"]
    return []


def check_committed_shards(path: str, deep: bool = True) -> VerifyReport:
    """Check every committed shard of the audit at ``path`` (read-only; see the module docstring)."""
    root = os.path.abspath(path)
    require_audit_dir(root)
    layout = AuditLayout(root)
    try:
        group = zarr.open_group(layout.zarr_path, mode="r", zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise NotAnAuditError(f"audit store at {root} has no Zarr group (created but never opened?)") from exc
    info = dict(group.attrs["layout"])
    n, size, k = int(info["n_samples"]), int(info["shard_size"]), int(info["explanations_per_sample"])
    plan = {sid: (start, min(start + size, n)) for sid, start in enumerate(range(0, n, size))}
    report = VerifyReport(root, deep, shards=len(plan))
    parts = committed_part_ids(layout.summaries_dir)
    records = read_records(layout)
    arrays = _sample_arrays(group)
    report.committed = sorted(parts)
    for name in sorted(os.listdir(layout.summaries_dir)) if os.path.isdir(layout.summaries_dir) else []:
        if parse_part_name(name) is None and not name.startswith((".", "_")):
            report.store_problems.append(
                f"summaries/{name} is not a Parquet part of this store: pd.read_parquet(<audit>/summaries) fails "
                "on it; move it out of the audit"
            )
    for sid in sorted(set(records) - set(parts)):
        report.notes.append(f"shard {sid}: commit record without a part (not committed; removed by --repair)")
    for sid, part in sorted(parts.items()):
        if sid not in plan:
            report.damaged[sid] = [f"part {os.path.basename(part)} names a shard outside the plan (0..{len(plan) - 1})"]
            continue
        record = records.get(sid)
        if record is None:
            try:
                part_metadata(part)
            except Exception as exc:
                report.damaged[sid] = [
                    f"Parquet part {os.path.basename(part)} is unreadable: {type(exc).__name__}: {exc}"
                ]
                continue
            report.notes.append(f"shard {sid}: commit record missing (rebuilt from the part by the next run)")
        start, stop = plan[sid]
        problems = _check_shard(layout, arrays, sid, start, stop, k, part, record, deep)
        if problems:
            report.damaged[sid] = problems
    return report


def uncommit_shards(layout: AuditLayout, shard_ids: Any) -> Removal:
    """Delete the part (the commit) and then the record of each shard; the caller holds the lock.
    Through :func:`~.removal.remove_owned`: a symlink in their place is kept, never followed."""
    files = []
    for sid in sorted(shard_ids):
        files += [f"{SUMMARIES_DIR}/{part_name(sid)}", f"{MANIFEST_DIR}/{record_name(sid)}"]
    result = remove_owned(layout.root, files)
    with contextlib.suppress(FileNotFoundError):
        fsync_path(layout.summaries_dir)  # the un-commit survives a crash
    return result


def tidy(layout: AuditLayout) -> Removal:
    """Remove records without a part and old-style temporaries in summaries/ and manifest/."""
    parts = committed_part_ids(layout.summaries_dir)
    files = []
    for folder in (SUMMARIES_DIR, MANIFEST_DIR):
        directory = os.path.join(layout.root, folder)
        for name in os.listdir(directory) if os.path.isdir(directory) else []:
            sid = parse_record_name(name)
            stale_record = folder == MANIFEST_DIR and sid is not None and sid not in parts
            if stale_record or is_old_temp(name):
                files.append(f"{folder}/{name}")
    return remove_owned(layout.root, files)


def repair_store(path: str, deep: bool = True) -> tuple[VerifyReport, list[str]]:
    """Check the audit at ``path`` and, holding its writer lock, un-commit every damaged shard and tidy
    records without parts and old temporaries. Returns the report (of the state before the repair) and
    the files removed. Files the store did not write are reported, never touched."""
    root = os.path.abspath(path)
    require_audit_dir(root)
    with lock_store(root):
        report = check_committed_shards(root, deep=deep)
        layout = AuditLayout(root)
        result = uncommit_shards(layout, report.damaged).extend(tidy(layout))
    removed = result.removed
    report.notes += [f"kept {p}: not a file the store wrote (symlink or other entry)" for p in result.kept]
    return report, removed
