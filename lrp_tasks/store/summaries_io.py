"""Parquet parts of the summaries: one file per shard, written with the pinned schema, read back as one
table of committed shards.

A part becomes visible only by an atomic rename of a fsynced hidden temporary, which is the moment its
shard counts as committed; ``pd.read_parquet(<audit>/summaries)`` therefore never sees a partial shard.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from .errors import ShardValidationError
from .layout import parse_part_name
from .schema import SUMMARY_COLUMNS, SUMMARY_SCHEMA, empty_summaries

_DICTIONARY_COLUMNS = ["dataset", "audit_id", "label", "predicted", "target", "target_rank", "shard_id"]

#: Key of the store's own entry in each part's Parquet key-value metadata.
PART_METADATA_KEY = b"lrp_audit"


def _column_from_pandas(series: pd.Series, field: pa.Field) -> pa.Array:
    """One column with the schema's type. Floats keep NaN as a value (``from_pandas`` would make it a
    null, which the non-nullable schema refuses); list columns of equal-length arrays are stacked."""
    typ = field.type
    if pa.types.is_list(typ):
        values = series.to_numpy()
        if len(values) and all(isinstance(v, np.ndarray) and v.ndim == 1 for v in values):
            lengths = {len(v) for v in values}
            if len(lengths) == 1:
                width = lengths.pop()
                flat = np.stack(values).reshape(-1) if width else np.zeros(0)
                offsets = pa.array(np.arange(len(values) + 1, dtype=np.int32) * width)
                return pa.ListArray.from_arrays(offsets, pa.array(flat, type=typ.value_type), type=typ)
        return pa.array(list(values), type=typ)
    if pa.types.is_floating(typ) or pa.types.is_integer(typ):
        return pa.array(series.to_numpy(), type=typ)
    return pa.array(series, type=typ, from_pandas=True)


def _table_from_pandas(df: pd.DataFrame) -> pa.Table:
    arrays = [_column_from_pandas(df[field.name], field) for field in SUMMARY_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=SUMMARY_SCHEMA)


def table_from_frame(
    df: pd.DataFrame | pa.Table,
    *,
    shard_id: int,
    start: int,
    stop: int,
    rows_per_sample: int,
    audit_id: str,
) -> pa.Table:
    """Check a shard's summary rows (a DataFrame, or a Table from ``summary_table``) and return them as
    a Table with the pinned schema; errors name the shard."""
    where = f"shard {shard_id} (samples {start}:{stop})"
    if not isinstance(df, pd.DataFrame | pa.Table):
        raise ShardValidationError(
            f"{where}: summaries must be a pandas DataFrame or a pyarrow Table, got {type(df).__name__}"
        )
    names = list(df.column_names if isinstance(df, pa.Table) else df.columns)
    missing = [c for c in SUMMARY_COLUMNS if c not in names]
    extra = [c for c in names if c not in SUMMARY_COLUMNS]
    if missing or extra:
        raise ShardValidationError(
            f"{where}: summaries columns differ from the schema: missing {missing}, extra {extra}"
        )
    expected_rows = (stop - start) * rows_per_sample
    if len(df) != expected_rows:
        raise ShardValidationError(
            f"{where}: summaries have {len(df)} rows, expected {expected_rows} "
            f"({stop - start} samples x {rows_per_sample} explanations)"
        )
    try:
        if isinstance(df, pa.Table):
            table = df.select(list(SUMMARY_COLUMNS))
            if not table.schema.remove_metadata().equals(SUMMARY_SCHEMA):
                table = table.cast(SUMMARY_SCHEMA)
        else:
            table = _table_from_pandas(df)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError, TypeError) as exc:
        raise ShardValidationError(f"{where}: summaries do not fit the schema: {exc}") from exc
    nulls = [name for name, col in zip(table.column_names, table.columns, strict=True) if col.null_count]
    if nulls:
        raise ShardValidationError(f"{where}: summaries have nulls in {nulls} (no column may be null)")
    idx = table.column("sample_index").to_numpy()
    if len(idx) and (idx.min() < start or idx.max() >= stop):
        raise ShardValidationError(
            f"{where}: summaries sample_index spans [{idx.min()}, {idx.max()}], outside [{start}, {stop})"
        )
    shard_ids = set(table.column("shard_id").unique().to_pylist())
    if shard_ids - {shard_id}:
        raise ShardValidationError(f"{where}: summaries carry shard_id {sorted(shard_ids)}")
    audit_ids = set(table.column("audit_id").unique().to_pylist())
    if audit_ids - {audit_id}:
        raise ShardValidationError(f"{where}: summaries carry audit_id {sorted(audit_ids)}, the store is {audit_id!r}")
    return table.replace_schema_metadata(None)


def encode_part(table: pa.Table, metadata: Mapping[str, Any]) -> bytes:
    """Serialise a part in memory (to checksum it and write it in one go); same input, same bytes."""
    table = table.replace_schema_metadata({PART_METADATA_KEY: json.dumps(dict(metadata), sort_keys=True)})
    sink = pa.BufferOutputStream()
    # Dictionary encoding only where values repeat (it slows down and bloats the float columns).
    pq.write_table(table, sink, compression="zstd", use_dictionary=_DICTIONARY_COLUMNS)
    return sink.getvalue().to_pybytes()


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def part_metadata(path: str) -> dict[str, Any]:
    """The store's metadata of a part (shard id, range, audit id, config digest)."""
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(PART_METADATA_KEY)
    return json.loads(raw) if raw else {}


def committed_part_ids(summaries_dir: str, fs: Any = None) -> dict[int, str]:
    """Shard id -> path of each visible part; hidden temporaries are not parts."""
    if fs is None:
        try:
            names = os.listdir(summaries_dir)
        except FileNotFoundError:
            return {}
        entries = [(n, os.path.join(summaries_dir, n)) for n in names]
    else:
        if not fs.exists(summaries_dir):
            return {}
        entries = [(p.rstrip("/").rsplit("/", 1)[-1], p) for p in fs.ls(summaries_dir, detail=False)]
    found = {}
    for name, path in entries:
        shard_id = parse_part_name(name)
        if shard_id is not None:
            found[shard_id] = path
    return found


def read_parts(paths: Iterable[str], fs: Any = None) -> pd.DataFrame:
    """Concatenate parts into one frame, sorted by (sample_index, target_rank), with the pinned dtypes."""
    paths = sorted(paths)
    if not paths:
        return empty_summaries()
    dataset = pads.dataset(paths, schema=SUMMARY_SCHEMA, format="parquet", filesystem=fs)
    table = dataset.to_table().sort_by([("sample_index", "ascending"), ("target_rank", "ascending")])
    return table.to_pandas()
