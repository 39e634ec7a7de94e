"""``lrp-audit heatmaps | report | compare``: look at an audit, or at how two audits differ.

lrp-audit heatmaps audits/demo --top 16 --by predicted_probability --ascending -o heatmaps/
lrp-audit report audits/demo -o report.html
lrp-audit compare audits/before audits/after -o comparison/
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any


def cmd_heatmaps(args: argparse.Namespace) -> int:
    from PIL import Image

    from lrp_tasks.report import figure_png, load_views, open_audit, plot_grid, select_samples
    from lrp_tasks.report.figures import side_by_side
    from lrp_tasks.report.heatmap import auto_upscale
    from lrp_tasks.store.output import output_file, write_bytes

    audit = open_audit(args.audit)
    rows = select_samples(
        audit.summaries, args.by, args.top, args.ascending, args.klass, args.class_by, args.misclassified
    )
    if rows.empty:
        print("lrp-audit: no sample matches the selection; nothing written")
        return 1
    views = load_views(audit, rows, sort_key=args.by)
    os.makedirs(args.output, exist_ok=True)
    zoom = args.upscale or auto_upscale(views[0].relevance.shape[-2:], 96)
    for rank, view in enumerate(views):
        pixels = side_by_side(view, overlay=args.overlay, percentile=args.percentile, cmap=args.cmap, upscale=zoom)
        name = f"{rank:03d}-sample-{view.sample_index}.png"
        with output_file(os.path.join(args.output, name)) as tmp:
            Image.fromarray(pixels).save(tmp, format="PNG")
    fig = plot_grid(views, args.columns, args.overlay, args.percentile, args.cmap, title=_title(args, len(views)))
    grid_path = os.path.join(args.output, "grid.png")
    write_bytes(grid_path, figure_png(fig, dpi=args.dpi))
    with output_file(os.path.join(args.output, "samples.csv")) as tmp:
        rows.drop(columns=["topk_positions", "topk_values"], errors="ignore").to_csv(tmp, index=False)
    print(f"{len(views)} samples → {args.output}/ (one PNG each, grid.png, samples.csv)")
    return 0


def _title(args: argparse.Namespace, n: int) -> str:
    parts = [f"top {n} by {args.by}" + (" (ascending)" if args.ascending else "")]
    if args.klass is not None:
        parts.append(f"{args.class_by} class {args.klass}")
    if args.misclassified:
        parts.append("misclassified")
    return ", ".join(parts)


def cmd_report(args: argparse.Namespace) -> int:
    from lrp_tasks.report import open_audit, write_report

    path = write_report(open_audit(args.audit), args.output)
    print(f"report: {path} ({os.path.getsize(path) / 1024:.0f} KiB, self-contained)")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from lrp_tasks.report import compare_audits, comparison_summary, most_changed, open_audit, write_comparison
    from lrp_tasks.report.document import comparison_html
    from lrp_tasks.report.html import page
    from lrp_tasks.store.output import write_text

    a, b = open_audit(args.audit_a), open_audit(args.audit_b)
    table = compare_audits(a, b, top=args.top_positions)
    summary = comparison_summary(table)
    if args.output:
        summary = write_comparison(table, args.output, a, b)
        meta: dict[str, Any] = json.load(open(os.path.join(args.output, "comparison.json")))
        html_path = os.path.join(args.output, "comparison.html")
        body = comparison_html(table, a, b, meta)
        title = f"Comparison: {args.audit_a} → {args.audit_b}"
        write_text(html_path, page(title, [("comparison", "Comparison", body)]))
    print(json.dumps(summary, indent=2))
    worst = most_changed(table, 5)[["sample_index", "predicted_a", "predicted_b", "cosine", "top_rank_correlation"]]
    print("\nmost changed:\n" + worst.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.output:
        print(f"\n→ {args.output}/comparison.parquet, comparison.json, comparison.html")
    return 0


def is_user_error(args: argparse.Namespace, exc: Exception) -> bool:
    """A ValueError from these commands is bad input (unknown column, audits of different data,
    a bad percentile): one line for the user, no traceback."""
    from flows.compare import CompareWithError

    ours = getattr(args, "func", None) in (cmd_heatmaps, cmd_report, cmd_compare)
    return isinstance(exc, CompareWithError) or (isinstance(exc, ValueError) and ours)


def add_parser(sub: Any) -> None:
    """Register the three commands on the ``lrp-audit`` subparsers."""
    heat = sub.add_parser("heatmaps", help="PNG heatmaps of selected samples of an audit, one each and a grid")
    heat.add_argument("audit")
    heat.add_argument("--top", type=int, default=16, help="how many samples (default 16)")
    heat.add_argument("--by", default="predicted_probability", help="summary column to sort by (descending)")
    heat.add_argument("--ascending", action="store_true", help="smallest values first")
    heat.add_argument("--class", dest="klass", type=int, help="only samples of this class")
    heat.add_argument("--class-by", choices=["predicted", "label"], default="predicted", help="what --class means")
    heat.add_argument("--misclassified", action="store_true", help="only samples whose prediction ≠ label")
    heat.add_argument("--overlay", action="store_true", help="add the heatmap over the grayscale input")
    heat.add_argument("--percentile", type=float, help="scale each map to this percentile of |R| (default: max)")
    heat.add_argument("--cmap", default="bwr", help="a diverging matplotlib colormap (default bwr)")
    heat.add_argument("--columns", type=int, help="grid columns")
    heat.add_argument("--upscale", type=int, help="pixels per relevance position in the per-sample PNGs")
    heat.add_argument("--dpi", type=int, default=110, help="resolution of grid.png")
    heat.add_argument("-o", "--output", required=True, help="directory for the PNGs")
    heat.set_defaults(func=cmd_heatmaps)

    rep = sub.add_parser("report", help="a self-contained HTML report of an audit")
    rep.add_argument("audit")
    rep.add_argument("-o", "--output", help="HTML file (default: <audit>/report.html)")
    rep.set_defaults(func=cmd_report)

    cmp_ = sub.add_parser("compare", help="compare two audits of the same dataset, sample by sample")
    cmp_.add_argument("audit_a", help="the earlier audit (A)")
    cmp_.add_argument("audit_b", help="the later audit (B)")
    cmp_.add_argument("--top-positions", type=int, help="positions ranked per map (default: a tenth, at least 5)")
    cmp_.add_argument("-o", "--output", help="directory for comparison.parquet/.json/.html")
    cmp_.set_defaults(func=cmd_compare)
