"""Per-sample statistics of LRP relevance maps, one row per (sample, explained target).

The rows are what analysts query (which samples leak relevance, which are dominated by a few pixels), so
the column names and dtypes are a stable contract: the store's
:data:`~lrp_tasks.store.schema.SUMMARY_SCHEMA` pins them and every Parquet part is written with it.
Everything is vectorised over the flattened maps; numpy, pandas and pyarrow only (no torch: callers
convert tensors with ``.numpy()``).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa

from lrp_tasks.store.schema import METRIC_COLUMNS, SUMMARY_SCHEMA

#: Number of most relevant positions kept per row by default.
DEFAULT_TOP_K = 5


def _as_1d(name: str, value: np.ndarray | Sequence[int], n: int, dtype: type) -> np.ndarray:
    arr = np.asarray(value)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    return arr.astype(dtype, copy=False)


# -- per-row statistics ---------------------------------------------------------------------------
#
# The maps are processed in blocks of rows small enough (~1 MiB) for the temporaries to stay in the CPU
# cache: each statistic is one or two passes over a block instead of a pass over the whole shard with
# a shard-sized temporary. Per element: |R|, a float64-accumulated sum of R and of |R|, one log, one
# comparison for the top-k, and one sort (the Gini coefficient needs the order of |R|).

_BLOCK_BYTES = 1 << 20
# Top-k candidates: rows are cut into groups of _GROUP values; the k groups with the largest maxima
# hold the k largest values (see _kth_largest), so only k * _GROUP values per row are partitioned.
_GROUP = 64


def _kth_largest(block: np.ndarray, kk: int) -> np.ndarray:
    """The ``kk``-th largest value of each row (exact).

    Let v be that value. If one of the kk largest values lay in a group not among the kk groups with
    the largest maxima, each of those kk groups would have a maximum >= it >= v: either way the chosen
    groups hold kk values >= v, and the kk-th largest of the candidates is v."""
    rows, size = block.shape
    groups = size // _GROUP
    if groups < 4 * kk:
        return np.partition(block, size - kk, axis=1)[:, size - kk]
    main = block[:, : groups * _GROUP].reshape(rows, groups, _GROUP)
    best = np.argpartition(main.max(axis=2), groups - kk, axis=1)[:, groups - kk :]
    cand = np.take_along_axis(main, best[:, :, None], axis=1).reshape(rows, kk * _GROUP)
    if size > groups * _GROUP:
        cand = np.concatenate([cand, block[:, groups * _GROUP :]], axis=1)
    return np.partition(cand, cand.shape[1] - kk, axis=1)[:, cand.shape[1] - kk]


def _top_k(block: np.ndarray, kk: int) -> np.ndarray:
    """Positions of the ``kk`` largest entries per row, ties by lowest index (unordered within a row).

    The kk-th largest value v is found exactly; the row's entries > v, then the first entries == v,
    are the answer (one comparison pass). Rows where that fails (NaN) use a stable sort."""
    rows, size = block.shape
    cut = _kth_largest(block, kk)[:, None]
    hits = np.flatnonzero(block >= cut)  # 1-D nonzero: much faster than the 2-D one
    count = np.bincount(hits // size, minlength=rows)
    if hits.size == rows * kk and (count == kk).all():
        return (hits % size).reshape(rows, kk)
    pos = np.empty((rows, kk), np.int64)
    exact = count == kk
    if exact.any():
        starts = np.concatenate([[0], np.cumsum(count)[:-1]])
        pick = (starts[exact][:, None] + np.arange(kk)).reshape(-1)
        pos[exact] = (hits[pick] % size).reshape(-1, kk)
    tied = np.flatnonzero(count > kk)  # several entries equal to v: keep the lowest indices among them
    if tied.size:
        sub, sub_cut = block[tied], cut[tied]
        above = sub > sub_cut
        at_cut = sub == sub_cut
        need = kk - np.count_nonzero(above, axis=1)[:, None]
        keep = above | (at_cut & (np.cumsum(at_cut, axis=1) <= need))
        pos[tied] = (np.flatnonzero(keep) % size).reshape(tied.size, kk)
    for r in np.flatnonzero(count < kk):  # NaN in the row: no order to trust, fall back to a sort
        pos[r] = np.argsort(-block[r], kind="stable")[:kk]
    return pos


def _summary_threads() -> int:
    """Threads for the statistics of one shard: ``LRP_AUDIT_SUMMARY_THREADS``, else the CPUs this
    process may use, at most 8. numpy releases the GIL in every heavy step (sort, log, reductions,
    BLAS), so row blocks run in parallel; a GPU worker's CPU cores are otherwise idle meanwhile."""
    env = os.environ.get("LRP_AUDIT_SUMMARY_THREADS")
    if env:
        return max(1, int(env))
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


# Below this many elements per shard one thread is faster than a pool's start-up and hand-offs.
_PARALLEL_MIN_ELEMENTS = 1 << 22


def _block_statistics(
    flat: np.ndarray, lo: int, hi: int, kk: int, work_dtype: np.dtype, gini_weights: np.ndarray, out: dict
) -> None:
    """The statistics of rows [lo, hi) into ``out`` (disjoint slices: blocks may run in parallel)."""
    tiny = np.finfo(work_dtype).smallest_subnormal  # x log max(x, tiny) is 0 at x = 0, exactly
    block = flat[lo:hi].astype(work_dtype, copy=False)
    mag = np.abs(block)
    out["total"][lo:hi] = np.add.reduce(block, axis=1, dtype=np.float64)
    out["mag_sum"][lo:hi] = np.add.reduce(mag, axis=1, dtype=np.float64)
    log = np.maximum(mag, tiny)
    np.log(log, out=log)
    log *= mag
    out["xlogx"][lo:hi] = np.add.reduce(log, axis=1, dtype=np.float64)
    if kk:
        pos = _top_k(block, kk)
        val = np.take_along_axis(block, pos, axis=1)
        order = np.lexsort((pos, -val.astype(np.float64)), axis=-1)  # largest first, then lowest index
        out["top_pos"][lo:hi] = np.take_along_axis(pos, order, axis=1)
        out["top_val"][lo:hi] = np.take_along_axis(val, order, axis=1)
    # |R| >= 0 (abs clears the sign bit): non-negative IEEE floats order like their bit patterns as
    # signed integers, and numpy sorts integers a little faster than floats.
    mag.view(np.dtype(f"i{mag.itemsize}")).sort(axis=1)
    # einsum's own loop (float64 accumulation), not BLAS: for long rows `@` hands the product to
    # OpenBLAS, whose threads wait for free cores; on a busy host that took ~30 ms per 3x224x224 row
    # instead of ~0.1 ms
    out["gini_num"][lo:hi] = np.einsum("ij,j->i", mag, gini_weights)


def _row_statistics(flat: np.ndarray, top_k: int, threads: int | None = None) -> dict[str, np.ndarray]:
    """Sum, |R| sum, sum of |R| log |R|, Gini numerator and top-k of each row of ``flat`` (rows, D),
    block by block, on ``threads`` threads for large shards (default :func:`_summary_threads`)."""
    rows, size = flat.shape
    work_dtype = np.result_type(flat.dtype, np.float32)  # float16 maps are summarised in float32
    kk = min(top_k, size)
    out = {
        "total": np.empty(rows),
        "mag_sum": np.empty(rows),
        "xlogx": np.empty(rows),
        "gini_num": np.empty(rows),
        "top_pos": np.empty((rows, kk), np.int64),
        "top_val": np.empty((rows, kk), np.float32),
    }
    gini_weights = 2.0 * np.arange(1, size + 1, dtype=np.float64) - size - 1.0
    step = max(1, _BLOCK_BYTES // (size * np.dtype(work_dtype).itemsize))
    blocks = [(lo, min(lo + step, rows)) for lo in range(0, rows, step)]
    threads = _summary_threads() if threads is None else threads
    if threads > 1 and len(blocks) > 1 and rows * size >= _PARALLEL_MIN_ELEMENTS:
        with ThreadPoolExecutor(min(threads, len(blocks))) as pool:
            for done in [pool.submit(_block_statistics, flat, lo, hi, kk, work_dtype, gini_weights, out)
                         for lo, hi in blocks]:
                done.result()
    else:
        for lo, hi in blocks:
            _block_statistics(flat, lo, hi, kk, work_dtype, gini_weights, out)
    return out


# -- the summary rows -----------------------------------------------------------------------------


def summary_table(
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
    metrics: Mapping[str, np.ndarray] | None = None,
) -> pa.Table:
    """The summary rows as a pyarrow Table with :data:`SUMMARY_SCHEMA` (what the store writes as is).

    Arguments as for :func:`summarize`, which returns the same rows as a DataFrame."""
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
        ids = [str(i) for i in sample_index.tolist()]
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
    predicted = lg.argmax(axis=1).astype(np.int64)
    shifted = lg - lg.max(axis=1, keepdims=True)
    predicted_probability = (1.0 / np.exp(shifted).sum(axis=1)).astype(np.float32)
    tgt = targets.reshape(n, k).astype(np.int64)
    target_logit = np.take_along_axis(logits, tgt, axis=1).astype(np.float32).reshape(rows)

    # Per-row quantities from the flattened maps.
    flat = relevance.reshape(rows, -1)
    size = flat.shape[1]
    stats = _row_statistics(flat, top_k)
    total, mag_sum = stats["total"], stats["mag_sum"]
    # sum(R > 0) = (sum R + sum |R|) / 2: two plain sums instead of two masked ones.
    positive = (total + mag_sum) / 2
    negative = (total - mag_sum) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = np.where(mag_sum > 0, np.log(mag_sum) - stats["xlogx"] / mag_sum, np.nan)
        gini = np.where(mag_sum > 0, stats["gini_num"] / (size * mag_sum), np.nan)

    when = (explained_at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(tzinfo=None)
    stamp = np.full(rows, np.datetime64(when, "us"))
    seed_flat = seed.reshape(rows)
    kk = stats["top_pos"].shape[1]
    offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * kk)
    columns = {
        "sample_index": np.repeat(sample_index, k),
        "sample_id": pa.array(ids if k == 1 else [s for s in ids for _ in range(k)], pa.string()),
        "dataset": pa.repeat(pa.scalar(str(dataset), pa.string()), rows),
        "label": np.repeat(labels_arr, k),
        "predicted": np.repeat(predicted, k),
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
        "topk_positions": pa.ListArray.from_arrays(
            offsets, pa.array(stats["top_pos"].reshape(-1)), type=SUMMARY_SCHEMA.field("topk_positions").type
        ),
        "topk_values": pa.ListArray.from_arrays(
            offsets, pa.array(stats["top_val"].reshape(-1)), type=SUMMARY_SCHEMA.field("topk_values").type
        ),
        "shard_id": np.full(rows, shard_id, np.int32),
        "audit_id": pa.repeat(pa.scalar(str(audit_id), pa.string()), rows),
        "explained_at": pa.array(stamp).cast(SUMMARY_SCHEMA.field("explained_at").type),
        **_metric_columns(metrics, rows),
    }
    arrays = [
        col if isinstance(col, pa.Array) else pa.array(col, type=SUMMARY_SCHEMA.field(name).type)
        for name, col in columns.items()
    ]
    return pa.Table.from_arrays(arrays, schema=SUMMARY_SCHEMA)


def _metric_columns(metrics: Mapping[str, np.ndarray] | None, rows: int) -> dict[str, np.ndarray]:
    """The faithfulness columns, NaN where ``metrics`` (column name -> one value per row) has none."""
    given = dict(metrics or {})
    unknown = sorted(set(given) - set(METRIC_COLUMNS))
    if unknown:
        raise ValueError(f"unknown metric columns {unknown}; the summaries have {list(METRIC_COLUMNS)}")
    columns = {}
    for name in METRIC_COLUMNS:
        value = np.full(rows, np.nan) if name not in given else np.asarray(given[name], np.float64).reshape(-1)
        if value.shape != (rows,):
            raise ValueError(f"metric column {name} must have {rows} values (one per row), got {value.shape}")
        columns[name] = value
    return columns


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
    metrics: Mapping[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Summary rows for ``n`` samples with ``k`` explanations each, in (sample, rank) order.

    Shapes: ``targets`` is ``(n,)`` (one explanation, ``relevance`` ``(n, *input)``) or ``(n, k)``
    (``relevance`` ``(n, k, *input)``); ``seed_relevance`` has the shape of ``targets``; ``logits`` is
    ``(n, C)``. ``labels=None`` means unknown (-1); ``sample_ids=None`` uses ``str(sample_index)``.
    ``target_rank`` defaults to ``0..k-1``. Statistics are computed from the maps as given (before any
    float16 storage rounding), accumulating in float64. ``metrics`` maps faithfulness columns
    (:data:`METRIC_COLUMNS`) to one value per row; the others are NaN. :func:`summary_table` gives the same rows as a
    pyarrow Table, which the store writes without a pandas conversion (faster).
    """
    return summary_table(
        relevance,
        logits,
        targets,
        seed_relevance,
        labels,
        sample_index,
        sample_ids,
        dataset,
        shard_id,
        audit_id,
        target_rank=target_rank,
        top_k=top_k,
        explained_at=explained_at,
        metrics=metrics,
    ).to_pandas()
