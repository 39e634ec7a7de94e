"""``lrp-audit summary AUDIT``: the per-audit numbers and a per-class table, read back from Parquet."""

from __future__ import annotations

import argparse
from typing import Any


def cmd_summary(args: argparse.Namespace) -> int:
    from lrp_tasks.report.markdown import audit_statistics
    from lrp_tasks.store import open_audit

    audit_dir = open_audit(args.audit)
    frame = audit_dir.summaries
    stats = audit_statistics(frame)
    print(f"audit {audit_dir.attrs.get('audit_id', '?')} at {args.audit}")
    print(f"committed shards: {len(audit_dir.committed_shards)}")
    width = max(len(k) for k in stats) if stats else 0
    for key, value in stats.items():
        shown = f"{value:.6g}" if isinstance(value, float) else value
        print(f"  {key:<{width}}  {shown}")
    if not frame.empty:
        top = frame[frame["target_rank"] == 0]
        table = top.groupby("predicted").agg(
            samples=("sample_index", "size"),
            mean_probability=("predicted_probability", "mean"),
            mean_relevance_sum=("relevance_sum", "mean"),
            mean_abs_conservation_error=("conservation_error", lambda s: s.abs().mean()),
        )
        print()
        print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    print_faithfulness(frame, audit_dir.attrs)
    return 0


def print_faithfulness(frame: Any, attrs: dict[str, Any]) -> None:
    """Per-class mean AOPCs and the share of samples whose MoRF beats random; the eMPRT result."""
    from lrp_tasks.report.markdown import faithfulness_table, sanity_lines

    table = faithfulness_table(frame)
    if table is not None:
        print("\nfaithfulness (AOPC means; MoRF>random: share of samples)")
        print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    for line in sanity_lines(attrs):
        print("\n" + line)


def add_parser(sub: Any) -> None:
    summary = sub.add_parser("summary", help="print the summary table of an audit directory")
    summary.add_argument("audit")
    summary.set_defaults(func=cmd_summary)
