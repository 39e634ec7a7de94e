"""The store's reader with figures: ``open_audit(path).plot(i)`` and ``.grid(...)`` for notebooks.

A subclass rather than methods on the store's reader, so that the store never imports the report
layer (imports point one way); ``heatmap(i)`` and everything else behave exactly as the store's.
"""

from __future__ import annotations

from matplotlib.figure import Figure

from lrp_tasks.store import AuditReader

from .figures import plot_grid, plot_sample
from .samples import load_views, select_samples


class AuditView(AuditReader):
    """An :class:`~lrp_tasks.store.AuditReader` that can also draw its samples."""

    def plot(self, sample_index: int, overlay: bool = True, percentile: float | None = None) -> Figure:
        """Input (if kept), heatmap and overlay of one sample, captioned: a matplotlib Figure."""
        rows = self.summaries[(self.summaries["sample_index"] == sample_index) & (self.summaries["target_rank"] == 0)]
        if rows.empty:
            self.heatmap(sample_index)  # raises the store's clear error (range, uncommitted shard)
            raise KeyError(f"sample {sample_index} has no summary row")
        return plot_sample(load_views(self, rows)[0], overlay=overlay, percentile=percentile)

    def grid(
        self,
        by: str = "predicted_probability",
        top: int = 16,
        ascending: bool = False,
        klass: int | None = None,
        misclassified: bool = False,
        columns: int | None = None,
        overlay: bool = False,
        percentile: float | None = None,
    ) -> Figure:
        """A captioned grid of the ``top`` samples by a summary column (see :func:`select_samples`)."""
        rows = select_samples(self.summaries, by, top, ascending, klass, misclassified=misclassified)
        title = f"top {len(rows)} by {by}{' (ascending)' if ascending else ''}"
        return plot_grid(load_views(self, rows, by), columns, overlay, percentile, title=title)


def open_audit(path: str) -> AuditView:
    """Open an audit directory for reading, with figures (see :func:`lrp_tasks.store.open_audit`)."""
    return AuditView(str(path))
