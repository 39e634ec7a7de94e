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
