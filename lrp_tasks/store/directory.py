"""Recognising an audit directory, claiming a new one, and removing only what the store wrote.

A directory is an audit store when it holds the marker ``lrp-audit.json`` (written first, when the store
claims an empty or new directory) or, for audits written before the marker existed, a
``relevance.zarr`` group with the store's attrs. Writing into, or overwriting, any other non-empty
directory is refused: an output path that points at a user's folder (or the project root) must never
lose a file.
"""

from __future__ import annotations

import json
import os

from .errors import AuditStoreError, NotAnAuditError
from .layout import (
    LOCK_FILE,
    MARKER_FILE,
    RELEVANCE_ZARR,
    REPORT_FILE,
    STORE_ENTRIES,
)
from .provenance import utc_now_iso
from .removal import clean_staging, refuse_symlinked_folders, remove_owned, wipe_plan


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
    records first (the shards stop counting), then the Zarr group (its ``zarr.json`` first) and the
    staging temporaries, all through :func:`~.removal.remove_owned`. Files and symlinks the store did
    not write stay; their paths (relative to ``root``) are returned. A user's file inside
    ``relevance.zarr/`` would keep the new group from taking its place: that is refused before anything
    is deleted."""
    require_audit_dir(root)
    refuse_symlinked_folders(root)
    files, dirs, foreign = wipe_plan(root)
    inside = [f for f in foreign if f.startswith(RELEVANCE_ZARR + "/")]
    if inside:
        shown = ", ".join(inside[:5]) + (f" and {len(inside) - 5} more" if len(inside) > 5 else "")
        raise AuditStoreError(
            f"cannot discard the audit at {root}: {RELEVANCE_ZARR}/ holds entries the store did not write "
            f"({shown}). Nothing was deleted; move them out of the audit, then run again."
        )
    # the old audit's report goes with it (SpRAy results and a stored comparison record the audit id
    # they were built from, and their readers refuse another audit's)
    result = remove_owned(root, [*files, REPORT_FILE], dirs)
    result.extend(clean_staging(root))
    return sorted(set(result.kept) | set(foreign))
