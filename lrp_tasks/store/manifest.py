"""Commit records: one small JSON file per committed shard under ``<audit>/manifest/``.

A shard is committed when its Parquet part is visible (see :mod:`.summaries_io`); that rename happens
only after the shard's Zarr chunks are fsynced. The record, written right after, is the durable receipt:
range, row count, part checksum, chunk keys, writer, time. One file per shard means two writers never
update the same file. If a writer dies between the rename and the record, the next writer that opens the
audit rebuilds the record from the part (``recovered: true``).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from typing import Any

from .durable import atomic_write_bytes
from .layout import FORMAT_VERSION, AuditLayout, parse_record_name
from .provenance import utc_now_iso
from .summaries_io import committed_part_ids, file_sha256, part_metadata


def make_record(
    *,
    shard_id: int,
    start: int,
    stop: int,
    rows: int,
    part_file: str,
    part_sha256: str,
    part_bytes: int,
    audit_id: str,
    config_digest: str,
    chunks: Mapping[str, list[str]] | None = None,
    chunk_files: Mapping[str, Mapping[str, int]] | None = None,
    run: str | None = None,
    recovered: bool = False,
) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "shard_id": shard_id,
        "start": start,
        "stop": stop,
        "rows": rows,
        "parquet": {"file": part_file, "sha256": part_sha256, "bytes": part_bytes},
        "zarr_chunks": dict(chunks or {}),
        "chunk_files": {key: dict(value) for key, value in (chunk_files or {}).items()},
        "run": run,
        "audit_id": audit_id,
        "config_digest": config_digest,
        "committed_at": utc_now_iso(),
        "writer": {"host": socket.gethostname(), "pid": os.getpid()},
        "recovered": recovered,
    }


def write_record(layout: AuditLayout, record: Mapping[str, Any]) -> None:
    data = json.dumps(dict(record), sort_keys=True, indent=1).encode()
    # No directory fsync: a record lost in a crash is rebuilt from its part (recover_missing_records).
    atomic_write_bytes(layout.record_path(int(record["shard_id"])), data, sync_dir=False, tmp_dir=layout.staging_dir)


def read_records(layout: AuditLayout, fs: Any = None) -> dict[int, dict[str, Any]]:
    """All commit records by shard id (a record without a part is ignored by callers)."""
    if fs is None:
        try:
            names = os.listdir(layout.manifest_dir)
        except FileNotFoundError:
            return {}
        paths = [os.path.join(layout.manifest_dir, n) for n in names]
        opener = open
    else:
        if not fs.exists(layout.manifest_dir):
            return {}
        paths = fs.ls(layout.manifest_dir, detail=False)
        opener = fs.open
    records = {}
    for path in paths:
        shard_id = parse_record_name(path.rstrip("/").rsplit("/", 1)[-1])
        if shard_id is None:
            continue
        with opener(path, "rb") as f:
            raw = f.read()
        try:
            records[shard_id] = json.loads(raw)
        except ValueError:
            continue  # unreadable after a crash: treated as missing, so the next open rebuilds it
    return records


def recover_missing_records(layout: AuditLayout, audit_id: str, config_digest: str) -> tuple[list[int], dict[int, str]]:
    """Write the record of every visible part that has none (writer killed right after the rename).

    Returns the recovered shard ids and, by shard id, why a part without record could not be read
    (a damaged part: the caller un-commits it)."""
    parts = committed_part_ids(layout.summaries_dir)
    records = read_records(layout)
    recovered, unreadable = [], {}
    for shard_id in sorted(set(parts) - set(records)):
        path = parts[shard_id]
        try:
            meta = part_metadata(path)
        except Exception as exc:
            unreadable[shard_id] = f"Parquet part {os.path.basename(path)} is unreadable: {type(exc).__name__}: {exc}"
            continue
        write_record(
            layout,
            make_record(
                shard_id=shard_id,
                start=int(meta.get("start", -1)),
                stop=int(meta.get("stop", -1)),
                rows=int(meta.get("rows", -1)),
                part_file=os.path.basename(path),
                part_sha256=file_sha256(path),
                part_bytes=os.path.getsize(path),
                audit_id=audit_id,
                config_digest=config_digest,
                recovered=True,
            ),
        )
        recovered.append(shard_id)
    return recovered, unreadable
