"""The audit's closing report: a markdown table for the Prefect artifact and the command line."""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from lrp_tasks.report import compare_audits, write_comparison
from lrp_tasks.report.document import COMPARISON_DIR
from lrp_tasks.report.tables import markdown_table
from lrp_tasks.store import AuditReader, open_audit


def audit_statistics(summaries: pd.DataFrame) -> dict[str, Any]:
    """Numbers a reviewer looks at first: coverage, classes, conservation error."""
    if summaries.empty:
        return {"explanations": 0, "samples": 0}
    top = summaries[summaries["target_rank"] == 0]
    err = summaries["conservation_error"].abs()
    labelled = top[top["label"] >= 0]
    stats: dict[str, Any] = {
        "explanations": len(summaries),
        "samples": int(summaries["sample_index"].nunique()),
        "classes_predicted": int(top["predicted"].nunique()),
        "conservation_error_abs_mean": float(err.mean()),
        "conservation_error_abs_p95": float(err.quantile(0.95)),
        "conservation_error_abs_max": float(err.max()),
        "relevance_sum_mean": float(summaries["relevance_sum"].mean()),
    }
    if len(labelled):
        stats["accuracy"] = float((labelled["predicted"] == labelled["label"]).mean())
    return stats


def markdown_report(
    name: str,
    location: str,
    stats: dict[str, Any],
    timing: dict[str, Any],
    per_class: pd.DataFrame | None = None,
    report_path: str | None = None,
    comparison: dict[str, Any] | None = None,
    comparison_note: str = "",
) -> str:
    rows = {**stats, **timing, "store": location}
    lines = [f"# Audit `{name}`", "", "| quantity | value |", "| --- | --- |"]
    for key, value in rows.items():
        shown = f"{value:.6g}" if isinstance(value, float) else str(value)
        lines.append(f"| {key.replace('_', ' ')} | {shown} |")
    if report_path:
        lines += ["", f"Full report with heatmaps (one self-contained HTML file): `{report_path}`"]
    if per_class is not None and not per_class.empty:
        lines += ["", "## Per class", "", markdown_table(per_class)]
    if comparison_note or comparison:
        lines += ["", "## Comparison", ""]
        if comparison_note:
            lines.append(comparison_note)
        if comparison:
            lines += ["", changed_sentence(comparison)]
    return "\n".join(lines)


_SHORT = {"region_perturbation": "RP", "pixel_flipping": "PF"}


def faithfulness_table(summaries: pd.DataFrame) -> pd.DataFrame | None:
    """Per explained class (first explanation of each sample) and for all samples: the mean AOPC of each
    perturbation metric and order, and the share of samples whose MoRF AOPC beats the random one.
    None when the audit computed no perturbation metric."""
    from lrp_tasks.store.schema import METRIC_COLUMNS, PERTURBATION_METRICS

    present = [c for c in METRIC_COLUMNS if c in summaries and summaries[c].notna().any()]
    if summaries.empty or not present:
        return None
    rows = summaries[summaries["target_rank"] == 0]
    aggregations: dict[str, tuple[str, Any]] = {"samples": ("sample_index", "size")}
    for metric in PERTURBATION_METRICS:
        short = _SHORT[metric]
        for order in ("morf", "lerf", "random"):
            column = f"{metric}_aopc_{order}"
            if column in present:
                aggregations[f"{short} AOPC {order}"] = (column, "mean")
        gap = f"{metric}_morf_minus_random"
        if gap in present:
            aggregations[f"{short} MoRF>random"] = (gap, lambda s: float((s > 0).mean()))
    by_class = rows.groupby("target").agg(**aggregations)
    overall = rows.assign(target="all").groupby("target").agg(**aggregations)
    table = pd.concat([by_class, overall])
    table.index.name = "class"
    return table


def sanity_lines(attrs: dict[str, Any]) -> list[str]:
    """The eMPRT record of the store attributes as a few readable lines (empty when not run)."""
    record = (attrs.get("sanity_checks") or {}).get("efficient_mprt")
    if not record:
        return []

    def num(key: str, spec: str = ".4g") -> str:
        value = record.get(key)
        return "n/a" if value is None else format(value, spec)

    return [
        f"Efficient MPRT on {record['samples']} samples (seed {record['seed']}, {record['n_bins']} bins): "
        f"relative complexity rise mean {num('score_mean')}, median {num('score_median')}; "
        f"explanations more complex for the randomised model on {num('share_complexity_rises', '.1%')} of "
        f"samples (entropy {num('complexity_trained_mean')} trained vs {num('complexity_randomized_mean')} random)"
    ]


def faithfulness_markdown(summaries: pd.DataFrame, attrs: dict[str, Any]) -> str:
    """The faithfulness part of the audit's markdown artifact ("" when no metric was configured)."""
    table = faithfulness_table(summaries)
    sanity = sanity_lines(attrs)
    if table is None and not sanity:
        return ""
    lines = ["", "## Faithfulness"]
    if table is not None:
        header = ["class", *table.columns]
        lines += ["", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for cls, row in table.iterrows():
            cells = [str(cls)]
            for column, value in row.items():
                if column == "samples":
                    cells.append(str(int(value)))
                elif "MoRF>random" in column:
                    cells.append(f"{value:.1%}")
                else:
                    cells.append(f"{value:.4g}")
            lines.append("| " + " | ".join(cells) + " |")
        lines += [
            "",
            "AOPC: mean drop of the explained logit over steps 0..L; MoRF>random: share of samples whose "
            "most-relevant-first AOPC exceeds the random-order AOPC.",
        ]
    if sanity:
        lines += ["", *sanity]
    return "\n".join(lines)


def changed_sentence(summary: dict[str, Any]) -> str:
    """How much changed, in one sentence a reviewer reads first."""
    below = next((v for k, v in summary.items() if k.startswith("share_cosine_below_")), 0.0)
    return (
        f"{summary['predictions_changed']} of {summary['samples_compared']} predictions changed "
        f"({summary['predictions_changed_share']:.1%}); relevance cosine similarity mean "
        f"{summary['cosine_mean']:.3f}, min {summary['cosine_min']:.3f}; {below:.1%} of the samples "
        f"below 0.9; rank correlation of the top {summary['top_positions']} positions mean "
        f"{summary['top_rank_correlation_mean']:.3f}."
    )


def compare_into_store(audit_dir: AuditReader, other: str) -> dict[str, Any]:
    """Compare the finished audit (B) with ``other`` (A); the table goes to ``<audit>/comparison/``,
    where the report finds it. Returns the summary."""
    before = open_audit(other)
    table = compare_audits(before, audit_dir)
    return write_comparison(table, os.path.join(str(audit_dir.path), COMPARISON_DIR), before, audit_dir)
