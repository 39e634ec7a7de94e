"""Comparing the inputs an audit kept with its dataset as it is now.

The dataset fingerprint refuses a resume when a file changed (size, times, a digest of sampled
blocks), but a change between the sampled blocks, made with the times set back, passes it. Where the
audit kept its inputs (``storage.keep_input``, the default), every committed sample can be read
again through the same reader and preprocessing the workers used and compared with what was
explained: ``lrp-audit verify`` does this, so a store built from other data than the dataset holds
now is never called sound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lrp_tasks.config import ConfigError, parse_config
from lrp_tasks.sources import SourceError, open_dataset
from lrp_tasks.store import open_audit

READ_ROWS = 256
"""Samples read at once from the store and from the dataset (bounds memory on large inputs)."""


@dataclass
class InputComparison:
    """What :func:`compare_kept_inputs` found."""

    dataset: str
    """The dataset as the audit names it (a path, or the kind for built-in data)."""
    compared: int = 0
    """Committed samples read again and compared."""
    differing: dict[int, int] = field(default_factory=dict)
    """First differing sample index of each committed shard whose kept inputs differ."""
    skipped: str | None = None
    """Why nothing was compared (no inputs kept, dataset unreadable), else None."""
    size_change: str | None = None
    """Set when the dataset no longer has the audit's number of samples."""

    @property
    def ok(self) -> bool:
        return not self.differing and self.size_change is None


def _dataset_name(config: dict) -> str:
    dataset = config.get("dataset") or {}
    return str(dataset.get("path") or dataset.get("kind") or "the dataset")


def compare_kept_inputs(audit: str | Path) -> InputComparison:
    """Read every committed shard's kept inputs and the dataset's samples at the same indices (through
    the audit's recorded config: reader, paths, preprocessing) and compare them exactly."""
    reader = open_audit(str(audit))
    result = InputComparison(_dataset_name(reader.config))
    if not reader.layout_info.get("keep_input"):
        result.skipped = "the audit did not keep its inputs (storage.keep_input: false)"
        return result
    try:
        source = open_dataset(parse_config(reader.config, source=f"{audit} (recorded config)"))
        n_now = len(source)
    except (ConfigError, SourceError, OSError, ValueError, KeyError) as exc:
        result.skipped = f"the dataset cannot be read ({' '.join(str(exc).split())})"
        return result
    info = reader.layout_info
    n, size = int(info["n_samples"]), int(info["shard_size"])
    if n_now != n:
        result.size_change = f"the dataset now has {n_now} samples, the audit {n}"
        return result
    for sid in sorted(reader.committed_shards):
        for lo in range(sid * size, min((sid + 1) * size, n), READ_ROWS):
            hi = min(lo + READ_ROWS, (sid + 1) * size, n)
            kept = reader.kept_inputs(lo, hi)
            now = source.read(lo, hi).x.numpy().astype(kept.dtype, copy=False)
            result.compared += hi - lo
            same = np.isclose(kept, now, rtol=0, atol=0, equal_nan=True)
            if not same.all():
                row = int(np.argwhere(~same.reshape(hi - lo, -1).all(axis=1))[0, 0])
                result.differing[sid] = lo + row
                break
    return result
