"""The report's numbers: overview, conservation check, per-class table, confusion counts, faithfulness.

Everything is computed from the summaries table (first explanation per sample), so the report, the
Prefect artifact and tests agree on one definition.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

#: A sample breaks conservation when |Σ R − seed| exceeds this share of |seed|. Bias terms and
#: ε-stabilizers absorb some relevance in every biased model (the demo CNN loses 7 % on average, 0.4 at
#: most), so the check is for gross breaks, not for round-off.
CONSERVATION_TOLERANCE = 0.25
#: The report warns when more than this share of samples breaks conservation.
CONSERVATION_WARN_SHARE = 0.10


def faithfulness_columns(frame: pd.DataFrame) -> list[str]:
    """The per-sample faithfulness scores the audit computed: numeric columns with ``aopc`` in their name
    (``region_perturbation_aopc_morf``, …) or the MoRF − random gap, that hold at least one number
    (the metrics step writes NaN for metrics it did not run)."""
    return [
        c
        for c in frame.columns
        if ("aopc" in c or c.endswith("morf_minus_random"))
        and pd.api.types.is_numeric_dtype(frame[c])
        and frame[c].notna().any()
    ]


def first_explanations(summaries: pd.DataFrame) -> pd.DataFrame:
    return summaries[summaries["target_rank"] == 0]


def conservation_check(summaries: pd.DataFrame, tolerance: float = CONSERVATION_TOLERANCE) -> dict[str, Any]:
    """|conservation error| statistics and the share of explanations beyond ``tolerance`` × |seed|."""
    if summaries.empty:
        return {"explanations": 0}
    err = summaries["conservation_error"].abs()
    seed = summaries["seed_relevance"].abs().clip(lower=np.finfo(np.float64).tiny)
    broken = (err / seed) > tolerance
    return {
        "explanations": len(summaries),
        "abs_mean": float(err.mean()),
        "abs_p95": float(err.quantile(0.95)),
        "abs_max": float(err.max()),
        "tolerance": tolerance,
        "broken": int(broken.sum()),
        "broken_share": float(broken.mean()),
    }


def overview(summaries: pd.DataFrame) -> dict[str, Any]:
    """Samples, explanations, accuracy over labelled samples, mean probability."""
    top = first_explanations(summaries)
    labelled = top[top["label"] >= 0]
    out: dict[str, Any] = {"samples": len(top), "explanations": len(summaries)}
    if len(labelled):
        out["accuracy"] = float((labelled["predicted"] == labelled["label"]).mean())
        out["misclassified"] = int((labelled["predicted"] != labelled["label"]).sum())
    if len(top):
        out["mean_probability"] = float(top["predicted_probability"].mean())
    return out


def _class_label(k: int, names: Sequence[str] | None) -> str:
    return f"{k} ({names[k]})" if names is not None and 0 <= k < len(names) and names[k] != str(k) else str(k)


def per_class_table(summaries: pd.DataFrame, class_names: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per class: samples with that label and predicted as it, accuracy (recall of the label),
    mean probability, mean relevance statistics of the samples predicted as the class, and mean AOPCs
    when the audit has them. Unlabelled audits are grouped by prediction only."""
    top = first_explanations(summaries)
    if top.empty:
        return pd.DataFrame()
    labelled = top[top["label"] >= 0]
    classes = sorted(set(top["predicted"].tolist()) | set(labelled["label"].tolist()))
    by_pred = top.groupby("predicted")
    stats = by_pred.agg(
        predicted_as=("sample_index", "size"),
        mean_probability=("predicted_probability", "mean"),
        mean_relevance_sum=("relevance_sum", "mean"),
        mean_positive=("positive_relevance", "mean"),
        mean_negative=("negative_relevance", "mean"),
        mean_entropy=("relevance_entropy", "mean"),
        mean_abs_conservation_error=("conservation_error", lambda s: s.abs().mean()),
    )
    aopc = faithfulness_columns(top)
    if aopc:
        stats = stats.join(by_pred[aopc].mean().add_prefix("mean_"))
    table = pd.DataFrame(index=pd.Index(classes, name="class"))
    if len(labelled):
        by_label = labelled.groupby("label")
        table["labelled"] = by_label.size()
        table["correct"] = (labelled["predicted"] == labelled["label"]).groupby(labelled["label"]).sum()
        table["accuracy"] = table["correct"] / table["labelled"]
    table = table.join(stats)
    for col in ("labelled", "correct", "predicted_as"):
        if col in table:
            table[col] = table[col].fillna(0).astype(np.int64)
    if class_names is not None and any(_class_label(k, class_names) != str(k) for k in table.index):
        table.insert(0, "name", [_class_label(k, class_names) for k in table.index])
    return table


def confusion_counts(summaries: pd.DataFrame) -> pd.DataFrame:
    """Label × predicted counts over labelled samples (rows: label, columns: predicted)."""
    top = first_explanations(summaries)
    labelled = top[top["label"] >= 0]
    if labelled.empty:
        return pd.DataFrame()
    classes = sorted(set(labelled["label"].tolist()) | set(labelled["predicted"].tolist()))
    counts = pd.crosstab(labelled["label"], labelled["predicted"])
    return counts.reindex(index=classes, columns=classes, fill_value=0).rename_axis(index="label", columns="predicted")


def faithfulness_table(summaries: pd.DataFrame) -> pd.DataFrame:
    """Mean of every faithfulness column per predicted class (empty when the audit has none), and for
    each metric with both orders the share of samples whose MoRF AOPC beats the random order's."""
    top = first_explanations(summaries)
    cols = faithfulness_columns(top)
    if not cols or top.empty:
        return pd.DataFrame()
    table = top.groupby("predicted")[cols].mean()
    for morf in [c for c in cols if c.endswith("aopc_morf")]:
        prefix = morf[: -len("aopc_morf")]
        rand = f"{prefix}aopc_random"
        if rand in cols:
            beats = (top[morf] > top[rand]).where(top[morf].notna() & top[rand].notna())
            table[f"{prefix}share_morf_beats_random"] = beats.groupby(top["predicted"]).mean()
    table.index.name = "predicted class"
    return table


def markdown_table(frame: pd.DataFrame, float_format: str = "{:.4g}") -> str:
    """A pandas frame as a GitHub markdown table (index included), without the tabulate package."""
    if frame.empty:
        return ""
    index_name = frame.index.name or ""
    header = [index_name, *map(str, frame.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for idx, row in frame.iterrows():
        cells = [str(idx)]
        for v in row:
            cells.append(float_format.format(v) if isinstance(v, float | np.floating) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
