"""Audit-level results added to the group attributes after the shards (e.g. sanity checks).

The group's ``zarr.json`` is replaced atomically (fsynced temporary + rename): a reader sees the old or
the new attributes, never a torn file. Only the flow's driver calls this, after the shards are done."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from lrp_tasks.config.canonical import canonical_json

from .durable import fsync_path
from .errors import NotAnAuditError
from .layout import TMP_SUFFIX, AuditLayout

#: Attribute keys the store itself owns; results may not overwrite them.
_RESERVED = (
    "format_version",
    "audit_id",
    "config",
    "config_digest",
    "weights_digest",
    "composite",
    "layout",
    "identity",
)


def set_audit_attribute(root: str, key: str, value: Any) -> None:
    """Set attribute ``key`` of the audit at ``root`` to the JSON-able ``value``."""
    if key in _RESERVED:
        raise ValueError(f"attribute {key!r} belongs to the store and cannot be replaced")
    canonical_json({key: value})  # refuses what JSON cannot hold (NaN, objects)
    path = os.path.join(AuditLayout(root).zarr_path, "zarr.json")
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError as exc:
        raise NotAnAuditError(f"no audit Zarr group at {os.path.dirname(path)}") from exc
    meta.setdefault("attributes", {})[key] = value
    tmp = os.path.join(os.path.dirname(path), f".zarr.json.{uuid.uuid4().hex}{TMP_SUFFIX}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_path(os.path.dirname(path))
