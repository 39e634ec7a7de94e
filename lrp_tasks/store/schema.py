"""The Parquet schema of the summaries: one row per (sample, explained target).

The store writes every part with :data:`SUMMARY_SCHEMA` and reads every part back with it, so the schema
is the store's contract with analysts; :mod:`lrp_tasks.audit.summaries` computes the rows."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

#: Perturbation metrics with columns in the summaries (``metrics.<name>`` in the audit config).
PERTURBATION_METRICS: tuple[str, ...] = ("region_perturbation", "pixel_flipping")
#: Their per-row scores: AOPC of each order and the MoRF − random AOPC gap (NaN when not computed).
METRIC_COLUMNS: tuple[str, ...] = tuple(
    f"{metric}_{score}"
    for metric in PERTURBATION_METRICS
    for score in ("aopc_morf", "aopc_lerf", "aopc_random", "morf_minus_random")
)


def _f(name: str, typ: pa.DataType) -> pa.Field:
    return pa.field(name, typ, nullable=False)


#: The Parquet schema of the summaries; ``pa.Table.from_pandas(df, schema=SUMMARY_SCHEMA)`` pins dtypes.
#: No column may be null (a missing label is -1, an undefined statistic is NaN), except the faithfulness
#: columns (:data:`METRIC_COLUMNS`), which the audit writes as NaN when not computed.
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
        # Faithfulness (lrp_tasks.metrics): AOPC per order and MoRF − random, NaN when not configured.
        # The only nullable columns: parts written before they existed read back as null (NaN in pandas),
        # and pa.Table.from_pandas turns their NaN into nulls.
        *(pa.field(name, pa.float64(), nullable=True) for name in METRIC_COLUMNS),
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
    **dict.fromkeys(METRIC_COLUMNS, "float64"),
}


def empty_summaries() -> pd.DataFrame:
    """A zero-row frame with the summary dtypes (what a store with no committed shard reads as)."""
    return SUMMARY_SCHEMA.empty_table().to_pandas()
