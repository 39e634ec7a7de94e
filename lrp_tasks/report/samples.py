"""Which samples to look at (top N by a summary column, a class, the misclassified) and their views.

Selection works on the summaries table only; :func:`load_views` then reads just the chosen maps (and
inputs, when the audit kept them) from the store.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from lrp_tasks.store import AuditReader

from .figures import SampleView

#: Columns that are not numbers to sort by.
_NOT_SORTABLE = {"sample_id", "dataset", "topk_positions", "topk_values", "audit_id", "explained_at"}


def sortable_columns(summaries: pd.DataFrame) -> list[str]:
    """Summary columns a selection can sort by (numeric ones)."""
    return [c for c in summaries.columns if c not in _NOT_SORTABLE and pd.api.types.is_numeric_dtype(summaries[c])]


def select_samples(
    summaries: pd.DataFrame,
    by: str = "predicted_probability",
    top: int = 16,
    ascending: bool = False,
    klass: int | None = None,
    class_by: str = "predicted",
    misclassified: bool = False,
) -> pd.DataFrame:
    """Rows of the first explanation (``target_rank == 0``) per sample, filtered and sorted.

    ``klass`` keeps one class (of ``class_by``: ``predicted`` or ``label``); ``misclassified`` keeps
    samples whose prediction differs from a known label. Ties are broken by sample index."""
    if by not in summaries.columns:
        raise ValueError(f"unknown summary column {by!r}; sortable columns: {', '.join(sortable_columns(summaries))}")
    if by not in sortable_columns(summaries):
        raise ValueError(f"summary column {by!r} is not numeric; sortable columns: {sortable_columns(summaries)}")
    if class_by not in ("predicted", "label"):
        raise ValueError(f"class_by must be 'predicted' or 'label', got {class_by!r}")
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    rows = summaries[summaries["target_rank"] == 0]
    if klass is not None:
        rows = rows[rows[class_by] == klass]
    if misclassified:
        rows = rows[(rows["label"] >= 0) & (rows["predicted"] != rows["label"])]
    rows = rows.sort_values([by, "sample_index"], ascending=[ascending, True], kind="stable")
    return rows.head(top).reset_index(drop=True)


def class_name(names: Sequence[str] | None, k: int) -> str | None:
    return str(names[k]) if names is not None and 0 <= k < len(names) else None


def load_views(reader: AuditReader, rows: pd.DataFrame, sort_key: str | None = None) -> list[SampleView]:
    """One :class:`SampleView` per selected row: its heatmap (rank of the row), input if kept, facts."""
    names = reader.class_names
    has_input = "input" in reader.dataset
    views = []
    for row in rows.itertuples(index=False):
        i = int(row.sample_index)
        image = np.asarray(reader.dataset["input"].sel(sample=i).values) if has_input else None
        views.append(
            SampleView(
                sample_index=i,
                relevance=reader.heatmap(i, rank=int(row.target_rank)),
                input=image,
                sample_id=str(row.sample_id),
                label=int(row.label),
                predicted=int(row.predicted),
                probability=float(row.predicted_probability),
                sort_key=sort_key,
                sort_value=None if sort_key is None else _scalar(getattr(row, sort_key)),
                label_name=class_name(names, int(row.label)),
                predicted_name=class_name(names, int(row.predicted)),
            )
        )
    return views


def _scalar(value: object) -> float | int:
    v = np.asarray(value).item()
    return v if isinstance(v, int | float) else float(v)
