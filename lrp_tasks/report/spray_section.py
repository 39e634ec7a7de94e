"""The report's SpRAy section, drawn from whatever ``<audit>/analysis/spray/`` holds.

The analysis step writes Parquet there (lrp_tasks.analysis, docs/spray.md). This module reads it
tolerantly: the parts of each directory are read as one table (``samples/class-000003.parquet``, …). A table
with ``sample_index`` and ``cluster`` gives cluster sizes and mean heatmaps per class (in the order of
``cluster_rank`` when present); one with an ``eigenvalue`` column the eigenvalue plot; any other is
shown as a table (only the rows of the chosen k when it has a ``chosen`` column).
Missing or unreadable files never break the report.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lrp_tasks.store import AuditReader

from .figures import figure_png
from .heatmap import heatmap_rgb
from .html import esc, frame_table, png_img

SPRAY_DIR = os.path.join("analysis", "spray")
_CLASS_COLUMNS = ("class", "klass", "predicted", "label", "class_index")
MAX_CLUSTERS_DRAWN = 8
MAX_MAPS_PER_MEAN = 2000
MAX_TABLE_ROWS = 100


def _tables(root: str) -> dict[str, pd.DataFrame]:
    """Parquet under ``root``, one frame per directory (its parts concatenated, e.g. one per class)."""
    out: dict[str, pd.DataFrame] = {}
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
        parts = sorted(f for f in files if f.endswith(".parquet") and not f.startswith((".", "_")))
        if not parts:
            continue
        name = os.path.relpath(dirpath, root)
        try:
            out[name] = pd.concat([pd.read_parquet(os.path.join(dirpath, f)) for f in parts], ignore_index=True)
        except Exception as exc:  # a broken file is shown as such, not fatal
            out[name] = pd.DataFrame({"unreadable": [repr(exc)]})
    return out


def _class_column(frame: pd.DataFrame) -> str | None:
    return next((c for c in _CLASS_COLUMNS if c in frame.columns), None)


def _eigen_plot(frame: pd.DataFrame, column: str) -> bytes:
    cls = _class_column(frame)
    fig = Figure(figsize=(6, 3.2), layout="constrained")
    ax = fig.add_subplot()
    groups = frame.groupby(cls, sort=True) if cls else [("all", frame)]
    for key, g in groups:
        values = g[column].to_numpy()
        if values.dtype == object:  # one list of eigenvalues per row
            values = np.concatenate([np.asarray(v, dtype=float) for v in values])
        ax.plot(np.arange(1, len(values) + 1), np.asarray(values, dtype=float), marker=".", label=str(key))
    ax.set_xlabel("index")
    ax.set_ylabel("eigenvalue")
    ax.set_title("smallest eigenvalues of the normalized Laplacian, per class")
    ax.legend(fontsize=6, ncols=2)
    return figure_png(fig)


def _cluster_means(reader: AuditReader, frame: pd.DataFrame) -> str:
    """One figure: a row per class, its largest clusters' mean heatmaps left to right."""
    cls = _class_column(frame)
    groups = list(frame.groupby(cls, sort=True)) if cls else [("all", frame)]
    committed = set(reader.committed_samples.tolist())
    width = min(MAX_CLUSTERS_DRAWN, max(g["cluster"].nunique() for _, g in groups))
    fig = Figure(figsize=(1.3 * width + 0.8, 1.45 * len(groups) + 0.2), layout="constrained")
    axes = fig.subplots(len(groups), width, squeeze=False)
    for r, (key, g) in enumerate(groups):
        sizes = g.groupby("cluster").size().sort_values(ascending=False)
        if "cluster_rank" in g:  # the analysis ranks clusters by how much they differ: show that order
            sizes = sizes.loc[g.groupby("cluster")["cluster_rank"].first().sort_values().index]
        for j in range(width):
            ax = axes[r, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(sizes):
                ax.set_axis_off()
                continue
            c = sizes.index[j]
            idx = [i for i in g.loc[g["cluster"] == c, "sample_index"].astype(int).tolist() if i in committed]
            idx = idx[:MAX_MAPS_PER_MEAN]
            if idx:
                maps = np.asarray(reader.relevance.sel(sample=idx).values)
                ax.imshow(heatmap_rgb(maps.reshape(len(idx), *maps.shape[1:]).mean(axis=0)), interpolation="nearest")
            rank = f" (rank {int(g.loc[g['cluster'] == c, 'cluster_rank'].iloc[0])})" if "cluster_rank" in g else ""
            ax.set_title(f"cluster {c}: {int(sizes[c])}{rank}", fontsize=7)
            if j == 0:
                ax.set_ylabel(f"class {key}", fontsize=8)
    return png_img(figure_png(fig), "SpRAy: mean heatmap of each cluster, a row per class")


def staleness(reader: AuditReader, root: str) -> tuple[bool, str | None]:
    """(belongs to another audit, warning) for the SpRAy results at ``root``: their ``spray.json``
    records the audit id and the committed shards they were built from (lrp_tasks.analysis.results)."""
    try:
        with open(os.path.join(root, "spray.json"), encoding="utf-8") as f:
            identity = json.load(f).get("identity") or {}
    except (OSError, ValueError, AttributeError):  # written by hand or by another tool: shown, marked
        return False, "no readable spray.json: cannot tell which audit these results were built from"
    built_for = identity.get("audit_id")
    if built_for != reader.audit_id:
        return True, (
            f"these SpRAy results were built from audit {built_for!r}, not this audit ({reader.audit_id!r}, "
            "e.g. the store was re-run with --fresh): stale, not shown. Run `lrp-audit spray <audit> --recompute`."
        )
    shards = sorted(int(s) for s in identity.get("committed_shards") or [])
    now = sorted(int(s) for s in reader.committed_shards)
    if shards != now:
        return False, (
            f"these SpRAy results were built from {len(shards)} committed shard(s); the audit now has {len(now)}: "
            "they describe an earlier snapshot (`lrp-audit spray <audit> --recompute` updates them)."
        )
    return False, None


def spray_section(reader: AuditReader) -> str | None:
    """HTML for the SpRAy results of the audit, or None when it has none; results built from another
    audit are replaced by a warning, those of an earlier snapshot of this one are marked."""
    root = os.path.join(str(reader.path), SPRAY_DIR)
    if not os.path.isdir(root):
        return None
    tables = _tables(root)
    if not tables:
        return None
    foreign, warning = staleness(reader, root)
    if foreign:
        return f'<p class="warning">{esc(warning or "")}</p>'
    body = [f'<p class="warning">{esc(warning)}</p>'] if warning else []
    body.append(f'<p class="note">Read from <code>{esc(SPRAY_DIR)}/</code>: {esc(", ".join(tables))}.</p>')
    for name, frame in tables.items():
        try:
            eig = next((c for c in frame.columns if "eigenval" in c.lower()), None)
            if eig is not None:
                body.append(png_img(_eigen_plot(frame, eig), f"eigenvalues ({name})"))
            elif {"sample_index", "cluster"} <= set(frame.columns):
                cls = _class_column(frame)
                counts = frame.groupby([cls, "cluster"] if cls else ["cluster"]).size()
                sizes = counts.unstack(fill_value=0) if cls else counts.to_frame("samples").T
                sizes.columns = [f"cluster {c}" for c in sizes.columns]
                body.append("<h3>Samples per cluster</h3>" + frame_table(sizes))
                body.append(_cluster_means(reader, frame))
            else:
                if "chosen" in frame.columns:  # per-cluster statistics for every k: the chosen k only
                    frame = frame[frame["chosen"].astype(bool)].drop(columns="chosen")
                sort = [c for c in ("class", "rank", "cluster") if c in frame.columns]
                shown = frame.sort_values(sort) if sort else frame
                body.append(f"<h3>{esc(name)}</h3>" + frame_table(shown.head(MAX_TABLE_ROWS), index=False))
        except Exception as exc:  # another writer's format may move on; say so instead of failing
            body.append(f'<p class="warning">could not draw {esc(name)}: {esc(repr(exc))}</p>')
    return "\n".join(body)
