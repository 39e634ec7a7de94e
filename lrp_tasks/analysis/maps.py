"""Read the relevance maps of one class from an audit, pooled on the fly.

Maps are streamed one Zarr chunk (of the sample axis) at a time and pooled at once, so memory holds
the pooled rows of the class (n × ≤ 32·32 float32) and one chunk, whatever the size of the inputs.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import zarr

from lrp_tasks.store import AuditReader

from .preprocess import pooled_shape, prepare


def class_column(by: str) -> str:
    """The summary column that groups samples: ``predicted`` or ``label``."""
    if by not in ("predicted", "label"):
        raise ValueError(f"by must be 'predicted' or 'label', got {by!r}")
    return by


def samples_by_class(reader: AuditReader, by: str) -> pd.Series:
    """Sample index → class of every committed sample (first explanation of each sample)."""
    frame = reader.summaries
    frame = frame[frame["target_rank"] == 0]
    return pd.Series(frame[class_column(by)].to_numpy(np.int64), index=frame["sample_index"].to_numpy(np.int64))


def read_class_rows(
    reader: AuditReader, indices: np.ndarray, max_side: int, how: str
) -> tuple[np.ndarray, tuple[int, int]]:
    """Pooled, normalized rows ``(len(indices), d)`` of the maps of ``indices`` (sorted ascending)."""
    array = zarr.open_group(reader.layout.zarr_path, mode="r", zarr_format=3)["relevance"]
    info = reader.layout_info
    k = int(info["explanations_per_sample"])
    sample_ndim = array.ndim - 1 - (1 if k > 1 else 0)
    spatial = array.shape[-2:] if sample_ndim >= 2 else (1, array.shape[-1])
    shape = pooled_shape(int(spatial[0]), int(spatial[1]), max_side)
    out = np.empty((len(indices), shape[0] * shape[1]), dtype=np.float32)
    chunk = int(array.chunks[0])
    chunk_of = indices // chunk
    starts = np.flatnonzero(np.r_[True, chunk_of[1:] != chunk_of[:-1]]) if len(indices) else np.zeros(0, int)
    bounds = np.r_[starts, len(indices)]
    for a, b in itertools.pairwise(bounds):
        wanted = indices[a:b]
        lo, hi = int(wanted[0]), int(wanted[-1]) + 1
        block = np.asarray(array[lo:hi, 0] if k > 1 else array[lo:hi])
        rows, _ = prepare(block[wanted - lo].astype(np.float32, copy=False), sample_ndim, max_side, how)
        out[a:b] = rows
    if not np.isfinite(out).all():
        bad = indices[~np.isfinite(out).all(axis=1)][:10].tolist()
        raise ValueError(f"relevance maps of samples {bad} hold NaN/inf (uncommitted or corrupt chunks?)")
    return out, shape
