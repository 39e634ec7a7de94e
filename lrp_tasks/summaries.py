"""Per-sample statistics of LRP relevance maps, one row per (sample, explained target).

The rows are what analysts query (which samples leak relevance, which are dominated by a few pixels), so
the column names and dtypes are a stable contract: :data:`SUMMARY_SCHEMA` pins them and the store writes
every Parquet part with it. Everything is vectorised over the flattened maps; numpy, pandas and pyarrow
only (no torch: callers convert tensors with ``.numpy()``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

#: Number of most relevant positions kept per row by default.
DEFAULT_TOP_K = 5


def _f(name: str, typ: pa.DataType) -> pa.Field:
    return pa.field(name, typ, nullable=False)


#: The Parquet schema of the summaries; ``pa.Table.from_pandas(df, schema=SUMMARY_SCHEMA)`` pins dtypes.
#: No column may be null (a missing label is -1, an undefined statistic is NaN).
SUMMARY_SCHEMA: pa.Schema = pa.schema(
    [
        _f("sample_index", pa.int64()),  # position in the dataset, 0..N-1 (== zarr row)
        _f("sample_id", pa.string()),  # file path, or str(sample_index) for array datasets
        _f("dataset", pa.string()),
        _f("label", pa.int64()),  # ground truth, -1 when unknown
        _f("predicted", pa.int64()),  # argmax of the logits
        _f("predicted_probability", pa.float32()),  # softmax(logits)[predicted]
        _f("target", pa.int64()),  # the class this row explains
        _f("target_rank", pa.int16()),  # 0..k-1 for top-k explanations, 0 otherwise
        _f("logit", pa.float32()),  # logits[target]
        _f("relevance_sum", pa.float64()),  # sum of R over the input
        _f("seed_relevance", pa.float64()),  # relevance put at the output (1 for one-hot, or the logit)
        _f("conservation_error", pa.float64()),  # relevance_sum - seed_relevance
        _f("positive_relevance", pa.float64()),  # sum of R where R > 0 (>= 0)
        _f("negative_relevance", pa.float64()),  # sum of R where R < 0 (<= 0); pos + neg == sum
        _f("relevance_entropy", pa.float64()),  # Shannon entropy (nats) of |R|/sum|R|; NaN if R == 0
        _f("relevance_sparsity", pa.float64()),  # Gini coefficient of |R| in [0, 1); NaN if R == 0
        _f("topk_positions", pa.list_(_f("element", pa.int64()))),  # flat C-order indices, largest R first
        _f("topk_values", pa.list_(_f("element", pa.float32()))),  # R at those positions
        _f("shard_id", pa.int32()),
        _f("audit_id", pa.string()),
        _f("explained_at", pa.timestamp("us", tz="UTC")),
    ]
)

#: Column names in schema order.
SUMMARY_COLUMNS: tuple[str, ...] = tuple(SUMMARY_SCHEMA.names)

#: pandas dtypes of a summaries frame (as built by :func:`summarize` and as read back from Parquet).
SUMMARY_PANDAS_DTYPES: dict[str, str] = {
    "sample_index": "int64",
    "sample_id": "str",
    "dataset": "str",
    "label": "int64",
    "predicted": "int64",
    "predicted_probability": "float32",
    "target": "int64",
    "target_rank": "int16",
    "logit": "float32",
    "relevance_sum": "float64",
    "seed_relevance": "float64",
    "conservation_error": "float64",
    "positive_relevance": "float64",
    "negative_relevance": "float64",
    "relevance_entropy": "float64",
    "relevance_sparsity": "float64",
    "topk_positions": "object",
    "topk_values": "object",
    "shard_id": "int32",
    "audit_id": "str",
    "explained_at": "datetime64[us, UTC]",
}


def empty_summaries() -> pd.DataFrame:
    """A zero-row frame with the summary dtypes (what a store with no committed shard reads as)."""
    return SUMMARY_SCHEMA.empty_table().to_pandas()


def _as_1d(name: str, value: np.ndarray | Sequence[int], n: int, dtype: type) -> np.ndarray:
    arr = np.asarray(value)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    return arr.astype(dtype, copy=False)


def _top_k(flat: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions and values of the ``kk`` largest entries per row, largest first, ties by lowest index.

    ``argpartition`` is O(D) but picks arbitrarily among values tied at the cut (common: sparse maps
    have many exact zeros); rows with such a tie are redone exactly so the result never depends on
    numpy's selection algorithm."""
    rows = flat.shape[0]
    if kk == 0:
        return np.zeros((rows, 0), np.int64), np.zeros((rows, 0), np.float32)
    size = flat.shape[1]
    part = np.argpartition(flat, size - kk, axis=1)[:, size - kk :]
    vals = np.take_along_axis(flat, part, axis=1)
    cut = vals.min(axis=1, keepdims=True)
    tied = np.flatnonzero((flat == cut).sum(axis=1) > (vals == cut).sum(axis=1))
    if tied.size:
        sub, sub_cut = flat[tied], cut[tied]
        above = sub > sub_cut
        at_cut = sub == sub_cut
        need = kk - above.sum(axis=1, keepdims=True)
        keep = above | (at_cut & (np.cumsum(at_cut, axis=1) <= need))
        part[tied] = np.nonzero(keep)[1].reshape(tied.size, kk)
        vals[tied] = np.take_along_axis(sub, part[tied], axis=1)
    order = np.lexsort((part, -vals.astype(np.float64)), axis=-1)
    return (
        np.take_along_axis(part, order, axis=1).astype(np.int64),
        np.take_along_axis(vals, order, axis=1).astype(np.float32),
    )


def summarize(
    relevance: np.ndarray,
    logits: np.ndarray,
    targets: np.ndarray,
    seed_relevance: np.ndarray,
    labels: np.ndarray | Sequence[int] | None,
    sample_index: np.ndarray | Sequence[int],
    sample_ids: Sequence[str] | None,
    dataset: str,
    shard_id: int,
    audit_id: str,
    target_rank: np.ndarray | None = None,
    top_k: int = DEFAULT_TOP_K,
    explained_at: dt.datetime | None = None,
) -> pd.DataFrame:
    """Summary rows for ``n`` samples with ``k`` explanations each, in (sample, rank) order.

    Shapes: ``targets`` is ``(n,)`` (one explanation, ``relevance`` ``(n, *input)``) or ``(n, k)``
    (``relevance`` ``(n, k, *input)``); ``seed_relevance`` has the shape of ``targets``; ``logits`` is
    ``(n, C)``. ``labels=None`` means unknown (-1); ``sample_ids=None`` uses ``str(sample_index)``.
    ``target_rank`` defaults to ``0..k-1``. Statistics are computed from the maps as given (before any
    float16 storage rounding), accumulating in float64.
    """
    logits = np.asarray(logits)
    targets = np.asarray(targets)
    relevance = np.asarray(relevance)
    if logits.ndim != 2:
        raise ValueError(f"logits must be (n, n_classes), got shape {logits.shape}")
    n, n_classes = logits.shape
    if targets.ndim not in (1, 2) or targets.shape[0] != n:
        raise ValueError(f"targets must be ({n},) or ({n}, k), got shape {targets.shape}")
    k = 1 if targets.ndim == 1 else targets.shape[1]
    lead = (n,) if targets.ndim == 1 else (n, k)
    if relevance.shape[: len(lead)] != lead or relevance.ndim == len(lead):
        raise ValueError(f"relevance must be {lead} + input shape to match targets, got {relevance.shape}")
    if not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"targets must be integers, got dtype {targets.dtype}")
    if targets.size and (targets.min() < 0 or targets.max() >= n_classes):
        raise ValueError(f"targets must lie in [0, {n_classes}), got [{targets.min()}, {targets.max()}]")
    seed = np.asarray(seed_relevance, dtype=np.float64)
    if seed.shape != targets.shape:
        raise ValueError(f"seed_relevance must have the shape of targets {targets.shape}, got {seed.shape}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")

    rows = n * k
    sample_index = _as_1d("sample_index", sample_index, n, np.int64)
    labels_arr = np.full(n, -1, np.int64) if labels is None else _as_1d("labels", labels, n, np.int64)
    if sample_ids is None:
        ids = [str(i) for i in sample_index]
    else:
        ids = [str(s) for s in sample_ids]
        if len(ids) != n:
            raise ValueError(f"sample_ids must have {n} entries, got {len(ids)}")
    if target_rank is None:
        ranks = np.tile(np.arange(k, dtype=np.int16), n)
    else:
        tr = np.asarray(target_rank)
        if tr.shape != targets.shape:
            raise ValueError(f"target_rank must have the shape of targets {targets.shape}, got {tr.shape}")
        ranks = tr.reshape(rows).astype(np.int16)

    # Per-sample quantities from the logits (softmax max = 1 / sum(exp(l - max l))).
    lg = logits.astype(np.float64)
    predicted = lg.argmax(axis=1)
    shifted = lg - lg.max(axis=1, keepdims=True)
    predicted_probability = (1.0 / np.exp(shifted).sum(axis=1)).astype(np.float32)
    tgt = targets.reshape(n, k).astype(np.int64)
    target_logit = np.take_along_axis(logits, tgt, axis=1).astype(np.float32).reshape(rows)

    # Per-row quantities from the flattened maps.
    flat = relevance.reshape(rows, -1)
    size = flat.shape[1]
    total = np.add.reduce(flat, axis=1, dtype=np.float64)
    mag = np.abs(flat)
    mag_sum = np.add.reduce(mag, axis=1, dtype=np.float64)
    # sum(R > 0) = (sum R + sum |R|) / 2: two plain sums instead of two masked ones (10x slower).
    positive = (total + mag_sum) / 2
    negative = (total - mag_sum) / 2
    log_mag = np.log(mag, out=np.zeros_like(mag), where=mag > 0)
    xlogx = np.add.reduce(mag * log_mag, axis=1, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = np.where(mag_sum > 0, np.log(mag_sum) - xlogx / mag_sum, np.nan)
        gini_weights = 2.0 * np.arange(1, size + 1, dtype=np.float64) - size - 1.0
        gini = np.where(mag_sum > 0, (np.sort(mag, axis=1) @ gini_weights) / (size * mag_sum), np.nan)

    top_pos, top_val = _top_k(flat, min(top_k, size))

    stamp = np.datetime64((explained_at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(tzinfo=None), "us")
    seed_flat = seed.reshape(rows)
    return pd.DataFrame(
        {
            "sample_index": np.repeat(sample_index, k),
            "sample_id": pd.Series(np.repeat(np.asarray(ids, dtype=object), k), dtype="str"),
            "dataset": pd.Series([dataset] * rows, dtype="str"),
            "label": np.repeat(labels_arr, k),
            "predicted": np.repeat(predicted.astype(np.int64), k),
            "predicted_probability": np.repeat(predicted_probability, k),
            "target": tgt.reshape(rows),
            "target_rank": ranks,
            "logit": target_logit,
            "relevance_sum": total,
            "seed_relevance": seed_flat,
            "conservation_error": total - seed_flat,
            "positive_relevance": positive,
            "negative_relevance": negative,
            "relevance_entropy": entropy,
            "relevance_sparsity": gini,
            "topk_positions": pd.Series(list(top_pos), dtype=object),
            "topk_values": pd.Series(list(top_val), dtype=object),
            "shard_id": np.full(rows, shard_id, np.int32),
            "audit_id": pd.Series([audit_id] * rows, dtype="str"),
            "explained_at": pd.Series(np.full(rows, stamp), dtype="datetime64[us]").dt.tz_localize("UTC"),
        },
        columns=list(SUMMARY_COLUMNS),
    )
