"""Audit-to-audit comparison: did the model (or the composite) change what it looks at?

For two audits of the same dataset, per sample: prediction change, cosine similarity of the relevance
maps, Spearman rank correlation over the top positions of either map, and the change of every
summary statistic both audits have. Maps are read block by block, never both audits whole.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np
import pandas as pd

from lrp_tasks.store import AuditReader
from lrp_tasks.store.output import output_file, write_text

from .tables import faithfulness_columns

#: Summary columns whose change (b - a) is reported; faithfulness (AOPC) columns are added when both have them.
DELTA_COLUMNS = (
    "predicted_probability",
    "relevance_sum",
    "conservation_error",
    "positive_relevance",
    "negative_relevance",
    "relevance_entropy",
    "relevance_sparsity",
)
COMPARISON_FILE = "comparison.parquet"
COMPARISON_META = "comparison.json"
BLOCK = 1024  # samples read at once from each audit


class AuditsNotComparableError(ValueError):
    """The two audits do not explain the same samples (or maps of the same shape)."""


def _first_rows(reader: AuditReader) -> pd.DataFrame:
    s = reader.summaries
    return s[s["target_rank"] == 0].set_index("sample_index", drop=False)


def _common_samples(a: AuditReader, b: AuditReader) -> np.ndarray:
    la, lb = a.layout_info, b.layout_info
    if int(la["n_samples"]) != int(lb["n_samples"]):
        raise AuditsNotComparableError(
            f"the audits cover different datasets: {a.path} has {la['n_samples']} samples, "
            f"{b.path} has {lb['n_samples']}"
        )
    if list(la["sample_shape"]) != list(lb["sample_shape"]):
        raise AuditsNotComparableError(
            f"the audits have different sample shapes: {la['sample_shape']} ({a.path}) vs "
            f"{lb['sample_shape']} ({b.path})"
        )
    common = np.intersect1d(a.committed_samples, b.committed_samples)
    if common.size == 0:
        raise AuditsNotComparableError(f"no sample is committed in both {a.path} and {b.path}")
    ids_a = _first_rows(a).loc[common, "sample_id"].to_numpy()
    ids_b = _first_rows(b).loc[common, "sample_id"].to_numpy()
    differ = np.flatnonzero(ids_a != ids_b)
    if differ.size:
        i = int(common[differ[0]])
        raise AuditsNotComparableError(
            f"the audits explain different samples: {differ.size} of {common.size} sample ids differ "
            f"(first: sample {i} is {ids_a[differ[0]]!r} in {a.path} but {ids_b[differ[0]]!r} in {b.path})"
        )
    return common


def _flat_maps(reader: AuditReader, samples: np.ndarray) -> np.ndarray:
    """(n, D) float64 relevance of the first explanation of each sample."""
    arr = reader.relevance
    if "explanation" in arr.dims:
        arr = arr.isel(explanation=0)
    values = np.asarray(arr.sel(sample=samples).values, dtype=np.float64)
    return values.reshape(len(samples), -1)


def cosine_similarity(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity; NaN where a row is all zero."""
    num = np.einsum("ij,ij->i", x, y)
    den = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _ranks(v: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis (ties share their mean rank), as Spearman's rho needs."""
    order = np.argsort(v, axis=-1, kind="stable")
    ranks = np.empty_like(v)
    n = v.shape[-1]
    rows = np.arange(v.shape[0])[:, None]
    ranks[rows, order] = np.arange(n, dtype=np.float64)
    sorted_v = np.take_along_axis(v, order, axis=-1)
    for i in range(v.shape[0]):  # ties are rare in float maps; fix them per row only where present
        sv = sorted_v[i]
        if np.any(sv[1:] == sv[:-1]):
            _, start, counts = np.unique(sv, return_index=True, return_counts=True)
            mean_rank = start + (counts - 1) / 2.0
            ranks[i, order[i]] = np.repeat(mean_rank, counts)
    return ranks


def top_rank_correlation(x: np.ndarray, y: np.ndarray, top: int) -> np.ndarray:
    """Row-wise Spearman correlation of x and y over the union of each row's ``top`` largest positions
    of x and of y (how much the order of the most relevant positions changed). NaN if constant."""
    top = max(1, min(top, x.shape[1]))
    top_x = np.argpartition(-x, top - 1, axis=1)[:, :top]
    top_y = np.argpartition(-y, top - 1, axis=1)[:, :top]
    mask = np.zeros(x.shape, dtype=bool)
    rows = np.arange(x.shape[0])[:, None]
    mask[rows, top_x] = True
    mask[rows, top_y] = True
    out = np.full(x.shape[0], np.nan)
    for size in np.unique(mask.sum(axis=1)):  # rows with unions of equal size are done together
        sel = np.flatnonzero(mask.sum(axis=1) == size)
        xs = x[sel][mask[sel]].reshape(len(sel), size)
        ys = y[sel][mask[sel]].reshape(len(sel), size)
        rx, ry = _ranks(xs), _ranks(ys)
        rx -= rx.mean(axis=1, keepdims=True)
        ry -= ry.mean(axis=1, keepdims=True)
        den = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[sel] = np.where(den > 0, (rx * ry).sum(axis=1) / np.where(den > 0, den, 1.0), np.nan)
    return out


def default_top(n_positions: int) -> int:
    """Positions compared by rank: a tenth of the map, at least 5."""
    return max(5, math.ceil(n_positions / 10))


def compare_audits(a: AuditReader, b: AuditReader, top: int | None = None) -> pd.DataFrame:
    """One row per sample committed in both audits (sample ids must match): predictions of both and
    whether it changed, ``cosine`` and ``top_rank_correlation`` of the maps, ``delta_<column>`` = b − a
    for the summary statistics both have."""
    samples = _common_samples(a, b)
    ra, rb = _first_rows(a).loc[samples], _first_rows(b).loc[samples]
    d = int(np.prod(a.layout_info["sample_shape"]))
    top = top or default_top(d)
    cos, rank = np.empty(len(samples)), np.empty(len(samples))
    for lo in range(0, len(samples), BLOCK):
        block = samples[lo : lo + BLOCK]
        x, y = _flat_maps(a, block), _flat_maps(b, block)
        cos[lo : lo + len(block)] = cosine_similarity(x, y)
        rank[lo : lo + len(block)] = top_rank_correlation(x, y, top)
    out = pd.DataFrame(
        {
            "sample_index": samples.astype(np.int64),
            "sample_id": ra["sample_id"].to_numpy(),
            "label": ra["label"].to_numpy(np.int64),
            "predicted_a": ra["predicted"].to_numpy(np.int64),
            "predicted_b": rb["predicted"].to_numpy(np.int64),
            "probability_a": ra["predicted_probability"].to_numpy(np.float64),
            "probability_b": rb["predicted_probability"].to_numpy(np.float64),
        }
    )
    out["prediction_changed"] = out["predicted_a"] != out["predicted_b"]
    out["cosine"] = cos
    out["top_rank_correlation"] = rank
    shared = [c for c in DELTA_COLUMNS if c in ra and c in rb]
    shared += sorted(set(faithfulness_columns(ra)) & set(faithfulness_columns(rb)))
    for col in shared:
        out[f"delta_{col}"] = rb[col].to_numpy(np.float64) - ra[col].to_numpy(np.float64)
    out.attrs["top_positions"] = top
    return out


def comparison_summary(table: pd.DataFrame, changed_below: float = 0.9) -> dict[str, Any]:
    """How much changed, in a few numbers (for the artifact and the report's first lines)."""
    n = len(table)
    cos = table["cosine"]
    return {
        "samples_compared": n,
        "predictions_changed": int(table["prediction_changed"].sum()),
        "predictions_changed_share": float(table["prediction_changed"].mean()) if n else 0.0,
        "cosine_mean": float(cos.mean()),
        "cosine_median": float(cos.median()),
        "cosine_min": float(cos.min()),
        f"share_cosine_below_{changed_below:g}": float((cos < changed_below).mean()) if n else 0.0,
        "top_rank_correlation_mean": float(table["top_rank_correlation"].mean()),
        "top_positions": int(table.attrs.get("top_positions", 0)),
    }


def most_changed(table: pd.DataFrame, n: int = 8) -> pd.DataFrame:
    """Samples whose explanation changed most: lowest cosine first (NaN last), then changed predictions."""
    order = table.assign(_cos=table["cosine"].fillna(np.inf))
    return order.sort_values(["_cos", "sample_index"]).head(n).drop(columns="_cos").reset_index(drop=True)


def write_comparison(
    table: pd.DataFrame, directory: str, a: AuditReader, b: AuditReader, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``<directory>/comparison.parquet`` (the table) and ``comparison.json`` (which audits, the summary);
    returns the summary. Written to temporaries and renamed, so a reader never sees half a file."""
    os.makedirs(directory, exist_ok=True)
    summary = comparison_summary(table)
    meta = {
        "audit_a": {"path": str(a.path), "audit_id": a.audit_id, "composite": a.attrs.get("composite", "")},
        "audit_b": {"path": str(b.path), "audit_id": b.audit_id, "composite": b.attrs.get("composite", "")},
        "summary": summary,
        **(extra or {}),
    }
    parquet = os.path.join(directory, COMPARISON_FILE)
    with output_file(parquet) as tmp:
        table.to_parquet(tmp, index=False)
    write_text(os.path.join(directory, COMPARISON_META), json.dumps(meta, indent=2, default=str))
    return summary


def read_comparison(directory: str) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    """A comparison written by :func:`write_comparison`, or None when there is none."""
    parquet, meta = os.path.join(directory, COMPARISON_FILE), os.path.join(directory, COMPARISON_META)
    if not (os.path.exists(parquet) and os.path.exists(meta)):
        return None
    with open(meta) as f:
        return pd.read_parquet(parquet), json.load(f)
