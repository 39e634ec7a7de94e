"""The audit report: one self-contained HTML file (images inline) built from an audit store.

Sections: overview, per-class table and confusion counts, the least confident and the misclassified
samples, and, when the store has them, faithfulness per class, SpRAy clusters and a comparison with
another audit.
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from lrp_tasks.store import AuditReader, open_audit
from lrp_tasks.store.output import write_text

from .compare import comparison_summary, most_changed, read_comparison
from .conservation import conservation_cause
from .figures import figure_png, plot_grid
from .heatmap import heatmap_rgb, input_rgb
from .html import esc, fmt, frame_table, key_values, page, png_img
from .samples import load_views, select_samples
from .spray_section import spray_section
from .tables import (
    CONSERVATION_TOLERANCE,
    CONSERVATION_WARN_SHARE,
    confusion_counts,
    conservation_check,
    faithfulness_table,
    overview,
    per_class_table,
)

REPORT_FILE = "report.html"
COMPARISON_DIR = "comparison"
GRID_SIZE = 16


def _grid_html(reader: AuditReader, rows: pd.DataFrame, key: str, title: str) -> str:
    if rows.empty:
        return '<p class="note">none</p>'
    views = load_views(reader, rows, sort_key=key)
    fig = plot_grid(views, overlay=False, title=title)
    return png_img(figure_png(fig), title)


def _overview(reader: AuditReader, summaries: pd.DataFrame, tolerance: float) -> str:
    cfg = reader.config
    model = cfg.get("model") or {}
    dataset = cfg.get("dataset") or {}
    info = reader.layout_info
    ov = overview(summaries)
    cons = conservation_check(summaries[summaries["target_rank"] == 0], tolerance)
    items: list[tuple[str, Any]] = [
        ("audit", f"{cfg.get('name', '?')} ({reader.audit_id})"),
        ("store", reader.path),
        ("model", model.get("builder") or model.get("path") or model.get("kind", "?")),
        ("weights", f"{model.get('weights', '–')} ({str(reader.attrs.get('weights_digest', ''))[:16]})"),
        ("dataset", f"{dataset.get('kind', '?')} {dataset.get('split', '') or dataset.get('root', '')}".strip()),
        ("samples committed", f"{ov['samples']:,} of {int(info['n_samples']):,}"),
        ("explanations per sample", info.get("explanations_per_sample", 1)),
        ("composite", cfg.get("composite", "?")),
        ("seed", cfg.get("seed", "?")),
        ("created", reader.attrs.get("created_at", "?")),
    ]
    if "accuracy" in ov:
        items.append(("accuracy", f"{ov['accuracy']:.4f} ({ov['misclassified']} misclassified)"))
    if "mean_probability" in ov:
        items.append(("mean probability of the prediction", ov["mean_probability"]))
    html_out = key_values(items)
    if cons.get("explanations"):
        html_out += "<h3>Conservation (Σ R − seed relevance)</h3>" + key_values(
            [
                ("mean |error|", cons["abs_mean"]),
                ("95th percentile |error|", cons["abs_p95"]),
                ("max |error|", cons["abs_max"]),
                (f"samples with |error| > {tolerance:g}·|seed|", f"{cons['broken']} ({cons['broken_share']:.1%})"),
            ]
        )
        if cons["broken_share"] > CONSERVATION_WARN_SHARE:
            html_out += (
                f'<p class="warning" id="conservation-warning">Warning: {cons["broken_share"]:.1%} of the samples '
                f"break conservation by more than {tolerance:g} of the seed relevance. "
                f"{esc(conservation_cause(str(reader.attrs.get('composite') or '')))}</p>"
            )
    composite = reader.attrs.get("composite")
    if composite:
        html_out += f"<details><summary>rules as assigned</summary><pre>{esc(composite)}</pre></details>"
    return html_out


def _per_class(summaries: pd.DataFrame, names: list[str] | None) -> str:
    table = per_class_table(summaries, names)
    out = frame_table(table)
    confusion = confusion_counts(summaries)
    if not confusion.empty:
        confusion.index.name = "label \\ predicted"
        out += "<h3>Confusion counts (rows: label, columns: prediction)</h3>" + frame_table(confusion)
    return out


def _changed_figure(a: AuditReader, b: AuditReader, rows: pd.DataFrame, per_row: int = 2) -> bytes:
    """Input | map A | map B for each sample, ``per_row`` samples side by side."""
    has_input = "input" in b.dataset
    per = 3 if has_input else 2
    nrows = -(-len(rows) // per_row)
    fig = Figure(figsize=(1.5 * per * per_row + 0.3, 1.7 * nrows + 0.2), layout="constrained")
    axes = fig.subplots(nrows, per * per_row, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for k, row in enumerate(rows.itertuples(index=False)):
        i = int(row.sample_index)
        shown = [("input", input_rgb(b.dataset["input"].sel(sample=i).values))] if has_input else []
        shown += [("A", heatmap_rgb(a.heatmap(i))), ("B", heatmap_rgb(b.heatmap(i)))]
        titles = {
            "input": f"#{i} label {row.label}",
            "A": f"A: pred {row.predicted_a}",
            "B": f"B: pred {row.predicted_b}, cos {row.cosine:.2f}",
        }
        for c, (name, rgb) in enumerate(shown):
            ax = axes[k // per_row, (k % per_row) * per + c]
            ax.set_axis_on()
            ax.imshow(rgb, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(titles[name], fontsize=7)
    return figure_png(fig)


def comparison_html(table: pd.DataFrame, a: AuditReader | None, b: AuditReader | None, meta: dict[str, Any]) -> str:
    """Summary numbers, the cosine histogram, and the most-changed samples (maps side by side when
    both audits can still be opened)."""
    summary = meta.get("summary") or comparison_summary(table)
    ma, mb = meta.get("audit_a", {}), meta.get("audit_b", {})
    out = key_values(
        [
            ("A (before)", f"{ma.get('path', '?')} ({ma.get('audit_id', '?')})"),
            ("B (after)", f"{mb.get('path', '?')} ({mb.get('audit_id', '?')})"),
            *((k.replace("_", " "), v) for k, v in summary.items()),
        ]
    )
    fig = Figure(figsize=(5, 2.4), layout="constrained")
    ax = fig.add_subplot()
    ax.hist(table["cosine"].dropna().to_numpy(), bins=40, range=(-1, 1), color="#b2182b")
    ax.set_xlabel("cosine similarity of the relevance maps (A vs B)")
    ax.set_ylabel("samples")
    out += png_img(figure_png(fig), "histogram of cosine similarities")
    worst = most_changed(table)
    cols = [c for c in ("sample_index", "label", "predicted_a", "predicted_b", "cosine", "top_rank_correlation")]
    out += "<h3>Samples whose explanation changed most</h3>" + frame_table(worst[cols], index=False)
    if a is not None and b is not None and len(worst):
        out += png_img(_changed_figure(a, b, worst), "most changed samples, A and B side by side")
    else:
        out += '<p class="note">Audit A can no longer be opened: no heatmaps side by side.</p>'
    return out


def _stored_comparison(reader: AuditReader) -> str | None:
    found = read_comparison(os.path.join(str(reader.path), COMPARISON_DIR))
    if found is None:
        return None
    table, meta = found
    built_for = (meta.get("audit_b") or {}).get("audit_id")
    if built_for != reader.audit_id:
        return (
            f'<p class="warning">The stored comparison was built for audit {esc(repr(built_for))}, not this audit '
            f"({esc(repr(reader.audit_id))}): stale, not shown. Run `lrp-audit compare` again.</p>"
        )
    other = None
    path = (meta.get("audit_a") or {}).get("path")
    if path:
        try:
            other = open_audit(path)
        except Exception:  # moved or deleted since: the numbers still stand
            other = None
    return comparison_html(table, other, reader, meta)


def build_report(reader: AuditReader, grid_size: int = GRID_SIZE, tolerance: float = CONSERVATION_TOLERANCE) -> str:
    """The report of one audit as an HTML string."""
    summaries = reader.summaries
    name = (reader.config or {}).get("name", reader.audit_id)
    sections: list[tuple[str, str, str]] = []
    if summaries.empty:
        sections.append(("overview", "Overview", '<p class="warning">No shard is committed yet.</p>'))
        return page(f"LRP audit report: {name}", sections)
    names = reader.class_names
    sections.append(("overview", "Overview", _overview(reader, summaries, tolerance)))
    sections.append(("per-class", "Per class", _per_class(summaries, names)))
    least = select_samples(summaries, "predicted_probability", grid_size, ascending=True)
    sections.append(
        (
            "least-confident",
            "Least confident samples",
            _grid_html(reader, least, "predicted_probability", f"{len(least)} least confident predictions"),
        )
    )
    wrong = select_samples(summaries, "predicted_probability", grid_size, misclassified=True)
    n_wrong = overview(summaries).get("misclassified", 0)
    sections.append(
        (
            "misclassified",
            "Misclassified samples",
            f'<p class="note">{fmt(n_wrong)} misclassified; the {len(wrong)} most confident shown.</p>'
            + _grid_html(reader, wrong, "predicted_probability", "misclassified, most confident first"),
        )
    )
    faith = faithfulness_table(summaries)
    if not faith.empty:
        sections.append(("faithfulness", "Faithfulness per class (AOPC)", frame_table(faith)))
    spray = spray_section(reader)
    if spray is not None:
        sections.append(("spray", "SpRAy clusters", spray))
    comparison = _stored_comparison(reader)
    if comparison is not None:
        sections.append(("comparison", "Comparison with another audit", comparison))
    intro = (
        '<p class="note">Heatmaps: red = positive relevance (evidence for the explained class), blue = '
        "negative, white = none; each map scaled to ±max|R|.</p>"
    )
    return page(f"LRP audit report: {name}", sections, intro)


def write_report(reader: AuditReader, path: str | None = None, **kwargs: Any) -> str:
    """Write the report (default ``<audit>/report.html``) via a temporary file; returns its path."""
    target = path or os.path.join(str(reader.path), REPORT_FILE)
    text = build_report(reader, **kwargs)
    write_text(target, text)  # a hidden temporary, removed on failure (a full disk: one line)
    return target
