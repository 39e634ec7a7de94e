"""The audit's closing report: a markdown table for the Prefect artifact and the command line."""

from __future__ import annotations

from typing import Any

import pandas as pd


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


def markdown_report(name: str, location: str, stats: dict[str, Any], timing: dict[str, Any]) -> str:
    rows = {**stats, **timing, "store": location}
    lines = [f"# Audit `{name}`", "", "| quantity | value |", "| --- | --- |"]
    for key, value in rows.items():
        shown = f"{value:.6g}" if isinstance(value, float) else str(value)
        lines.append(f"| {key.replace('_', ' ')} | {shown} |")
    top = stats.get("per_class")
    if top:
        lines += ["", "| predicted class | samples |", "| --- | --- |"]
        lines += [f"| {c} | {n} |" for c, n in top.items()]
    return "\n".join(lines)
