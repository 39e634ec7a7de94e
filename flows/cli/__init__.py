"""``lrp-audit``, the command line: one module per command (run/validate, summary, report/heatmaps/compare,
verify, spray, export); ``main`` parses and dispatches."""

from flows.cli.main import build_parser, main, package_version

__all__ = ["build_parser", "main", "package_version"]
