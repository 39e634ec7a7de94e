"""The one canonical JSON of a config, and the one digest over it.

Every identity in the project is computed here: an audit store's config digest (with the audit's
result-neutral fields left out, ``lrp_tasks.audit.identity``), the store's check on resume, a SpRAy
result's config. Plain JSON data in, so a config read back from a store hashes like the one it was
written from."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any


def canonical_json(obj: Any) -> str:
    """Compact JSON with sorted keys: the same data always gives the same text. Refuses what JSON
    cannot hold (NaN, infinities, objects)."""
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"audit config must be JSON-serialisable (plain dicts/lists/str/numbers): {exc}") from exc


def strip_fields(config: Mapping[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    """A copy of ``config`` without the fields named by dotted ``paths`` (absent ones are ignored)."""
    out = copy.deepcopy(dict(config))
    for path in paths:
        *parents, leaf = path.split(".")
        node: Any = out
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return out


def json_digest(config: Mapping[str, Any], exclude: Iterable[str] = ()) -> str:
    """sha256 of the canonical JSON of ``config`` without the fields named by dotted paths in ``exclude``."""
    return hashlib.sha256(canonical_json(strip_fields(config, exclude)).encode("utf-8")).hexdigest()


def differing_fields(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the leaves where two JSON-like configs differ (sorted)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            out += differing_fields(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if canonical_json(old) == canonical_json(new) else [prefix.rstrip(".")]
