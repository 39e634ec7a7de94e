"""What people look at: heatmaps, the HTML audit report, and audit-to-audit comparison.

numpy, pandas and matplotlib only (no Prefect, no Ray): the flows and the command line call it.
:func:`open_audit` here is the store's reader plus figures (``plot``, ``grid``) for notebooks.
"""

from .audit_view import AuditView, open_audit
from .compare import AuditsNotComparableError, compare_audits, comparison_summary, most_changed, write_comparison
from .document import REPORT_FILE, build_report, write_report
from .figures import SampleView, figure_png, plot_grid, plot_sample
from .heatmap import heatmap_rgb, overlay_rgb, symmetric_scale
from .samples import load_views, select_samples

__all__ = [
    "REPORT_FILE",
    "AuditView",
    "AuditsNotComparableError",
    "SampleView",
    "build_report",
    "compare_audits",
    "comparison_summary",
    "figure_png",
    "heatmap_rgb",
    "load_views",
    "most_changed",
    "open_audit",
    "overlay_rgb",
    "plot_grid",
    "plot_sample",
    "select_samples",
    "symmetric_scale",
    "write_comparison",
    "write_report",
]
