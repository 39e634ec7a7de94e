"""Recognising an audit directory, claiming a new one, and removing only what the store wrote.

A directory is an audit store when it holds the marker ``lrp-audit.json`` (written first, when the store
claims an empty or new directory) or, for audits written before the marker existed, a
``relevance.zarr`` group with the store's attrs. Writing into, or overwriting, any other non-empty
directory is refused: an output path that points at a user's folder (or the project root) must never
lose a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid

from .durable import clear_directory
from .errors import NotAnAuditError
from .layout import (
    LOCK_FILE,
    MARKER_FILE,
    RELEVANCE_ZARR,
    STAGING_DIR,
    STORE_ENTRIES,
    TMP_SUFFIX,
    AuditLayout,
    parse_part_name,
    parse_record_name,
)
from .provenance import utc_now_iso


def _has_audit_group(root: str) -> bool:
    try:
        with open(os.path.join(root, RELEVANCE_ZARR, "zarr.json"), "rb") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return False
    attrs = meta.get("attributes") if isinstance(meta, dict) else None
    return isinstance(attrs, dict) and "layout" in attrs and "audit_id" in attrs


def is_audit_dir(root: str) -> bool:
    """True when ``root`` is recognisably an audit store (marker, or an older audit's Zarr group)."""
    return os.path.isfile(os.path.join(root, MARKER_FILE)) or _has_audit_group(root)


def _write_marker(root: str) -> None:
    body = json.dumps(
        {"lrp_audit_store": 1, "created_at": utc_now_iso(), "note": "an lrp-audit store; see docs/store.md"},
        indent=1,
    ).encode()
    try:
        fd = os.open(os.path.join(root, MARKER_FILE), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return  # a concurrent creator claimed it first: same outcome
    try:
        os.write(fd, body)  # not fsynced: after a crash the Zarr group (fsynced) still marks the audit
    finally:
        os.close(fd)


def claim_directory(root: str) -> None:
    """Make ``root`` an audit store directory, or raise :class:`NotAnAuditError` when it is a
    non-empty directory that is not one (nothing is written or deleted then)."""
    if os.path.exists(root) and not os.path.isdir(root):
        raise NotAnAuditError(f"audit path {root} exists and is not a directory")
    os.makedirs(root, exist_ok=True)
    if os.path.isfile(os.path.join(root, MARKER_FILE)):
        return
    if _has_audit_group(root):  # an audit written before the marker existed
        _write_marker(root)
        return
    refuse_foreign(root)
    _write_marker(root)


def refuse_foreign(root: str) -> None:
    """Raise :class:`NotAnAuditError` when ``root`` is a non-empty directory that is not an audit store."""
    if not os.path.isdir(root) or is_audit_dir(root):
        return
    entries = os.listdir(root)
    if set(entries) <= set(STORE_ENTRIES) and not any(_holds_files(os.path.join(root, n)) for n in entries):
        return  # only the empty skeleton of a store whose creation was cut short (e.g. by a power loss)
    foreign = sorted((n for n in entries if n != LOCK_FILE), key=lambda n: (n.startswith("."), n))
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise NotAnAuditError(
            f"{root} is not empty and is not an lrp-audit store (no {MARKER_FILE}, no {RELEVANCE_ZARR} group): "
            f"it holds {shown}. Nothing was written or deleted; give the audit a new or empty output directory."
        )


def _holds_files(path: str) -> bool:
    if os.path.basename(path) == LOCK_FILE or not os.path.isdir(path):
        return os.path.basename(path) != LOCK_FILE
    return any(files for _, _, files in os.walk(path))


def require_audit_dir(root: str) -> None:
    if not os.path.isdir(root) or not is_audit_dir(root):
        raise NotAnAuditError(f"no audit store at {root} (no {MARKER_FILE}, no {RELEVANCE_ZARR} group)")


def wipe_store(root: str) -> list[str]:
    """Delete what the store wrote in ``root`` (an audit directory, lock held by the caller): parts and
    records first (the shards stop counting), then the Zarr group and the staging area. Files the
    store did not write stay; their paths are returned."""
    require_audit_dir(root)
    layout = AuditLayout(root)
    kept: list[str] = []
    for directory, ours in (
        (layout.summaries_dir, lambda n: parse_part_name(n) is not None or _is_temp(n)),
        (layout.manifest_dir, lambda n: parse_record_name(n) is not None or _is_temp(n)),
    ):
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            continue
        for name in names:
            path = os.path.join(directory, name)
            if ours(name) and os.path.isfile(path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            else:
                kept.append(path)
    group = layout.zarr_path
    if os.path.isdir(group):
        os.makedirs(layout.staging_dir, exist_ok=True)
        trash = os.path.join(layout.staging_dir, f".trash-{uuid.uuid4().hex}")
        os.rename(group, trash)  # the group vanishes at once; deleting its files may take a while
    for name in os.listdir(root):
        if name.startswith(f".{RELEVANCE_ZARR}.") and name.endswith(TMP_SUFFIX):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    clear_directory(os.path.join(root, STAGING_DIR))
    return kept


def _is_temp(name: str) -> bool:
    """Temporaries older versions of the store left next to parts and records."""
    return name.endswith(TMP_SUFFIX) and name.startswith((".part-", ".shard-"))
