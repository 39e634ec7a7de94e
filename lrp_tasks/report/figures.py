"""matplotlib figures of explained samples: one sample (input | heatmap [| overlay]) or a captioned grid.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot state, any backend, thread-safe enough
for a flow); notebooks display them as they are, ``fig.savefig(...)`` writes files.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from .heatmap import DEFAULT_CMAP, heatmap_rgb, input_rgb, overlay_rgb, to_2d, to_uint8


@dataclass
class SampleView:
    """What one panel shows: the relevance map and (if the audit kept it) the input, with its facts."""

    sample_index: int
    relevance: np.ndarray
    input: np.ndarray | None = None
    sample_id: str = ""
    label: int = -1
    predicted: int = -1
    probability: float = float("nan")
    sort_key: str | None = None
    sort_value: float | None = None
    label_name: str | None = None
    predicted_name: str | None = None

    def caption(self) -> str:
        """Two short lines: id, label → prediction (probability), and the value it was sorted by."""
        label = self.label_name if self.label_name is not None else self.label
        pred = self.predicted_name if self.predicted_name is not None else self.predicted
        ident = f"#{self.sample_index}"
        if self.sample_id and self.sample_id != str(self.sample_index):
            sid = self.sample_id if len(self.sample_id) <= 24 else "…" + self.sample_id[-23:]
            ident += f" {sid}"
        truth = f"label {label} → {pred}" if self.label >= 0 else f"pred {pred}"
        line2 = f"{truth} (p={self.probability:.2f})"
        if self.sort_key and self.sort_key != "predicted_probability":  # already shown as p=
            line2 += f"\n{self.sort_key}={_short(self.sort_value)}"
        return f"{ident}\n{line2}"


def _short(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def panels(
    view: SampleView, overlay: bool = False, percentile: float | None = None, cmap: str = DEFAULT_CMAP
) -> list[tuple[str, np.ndarray]]:
    """(title, RGB image) pairs drawn for one sample: input (if kept), heatmap, overlay (if asked)."""
    out: list[tuple[str, np.ndarray]] = []
    if view.input is not None:
        out.append(("input", input_rgb(view.input)))
    out.append(("relevance", heatmap_rgb(view.relevance, percentile, cmap)))
    if overlay and view.input is not None:
        out.append(("overlay", overlay_rgb(view.relevance, view.input, percentile, cmap)))
    return out


def plot_sample(
    view: SampleView, overlay: bool = True, percentile: float | None = None, cmap: str = DEFAULT_CMAP
) -> Figure:
    """Input and heatmap side by side (and the overlay), captioned, with a colour bar of ±m."""
    drawn = panels(view, overlay, percentile, cmap)
    fig = Figure(figsize=(2.6 * len(drawn) + 0.6, 3.0), layout="constrained")
    axes = fig.subplots(1, len(drawn), squeeze=False)[0]
    for ax, (title, rgb) in zip(axes, drawn, strict=True):
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    fig.suptitle(view.caption().replace("\n", "  "), fontsize=9)
    return fig


def plot_grid(
    views: Sequence[SampleView],
    columns: int | None = None,
    overlay: bool = False,
    percentile: float | None = None,
    cmap: str = DEFAULT_CMAP,
    title: str | None = None,
) -> Figure:
    """A grid with one captioned cell per sample; a cell is input | heatmap (| overlay) side by side."""
    if not views:
        raise ValueError("nothing to draw: no samples were selected")
    per = len(panels(views[0], overlay, percentile, cmap))
    cols = columns or min(len(views), max(1, 8 // per))
    rows = math.ceil(len(views) / cols)
    cell_w, cell_h = 1.35 * per, 1.75
    fig = Figure(figsize=(cols * cell_w + 0.2, rows * cell_h + (0.4 if title else 0.1)), layout="constrained")
    grid = fig.add_gridspec(rows, cols)
    for i, view in enumerate(views):
        cell = grid[i // cols, i % cols].subgridspec(1, per, wspace=0.04)
        for j, (_name, rgb) in enumerate(panels(view, overlay, percentile, cmap)):
            ax = fig.add_subplot(cell[0, j])
            ax.imshow(rgb, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_title(view.caption(), fontsize=6.5, loc="left")
            ax.set_gid(f"sample-{view.sample_index}-{_name}")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def figure_png(fig: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes (for files and data URIs)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def side_by_side(
    view: SampleView,
    overlay: bool = False,
    percentile: float | None = None,
    cmap: str = DEFAULT_CMAP,
    upscale: int = 1,
    gap: int = 2,
) -> np.ndarray:
    """Exact pixels of one sample's panels, left to right, separated by ``gap`` white columns (uint8
    RGB; each relevance position becomes ``upscale``×``upscale`` pixels, no interpolation)."""
    imgs = [to_uint8(rgb, upscale) for _, rgb in panels(view, overlay, percentile, cmap)]
    h = max(i.shape[0] for i in imgs)
    spacer = np.full((h, gap * upscale, 3), 255, np.uint8)
    parts: list[np.ndarray] = []
    for k, img in enumerate(imgs):
        if k:
            parts.append(spacer)
        parts.append(img)
    return np.concatenate(parts, axis=1)


def map_shape(relevance: np.ndarray) -> tuple[int, int]:
    """Height and width a relevance map is drawn with."""
    return tuple(to_2d(relevance).shape)  # type: ignore[return-value]
