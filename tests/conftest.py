"""Test-wide environment: a private Prefect home and no usage reporting (set before any import
of prefect or ray)."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="lrp-audit-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("LRP_AUDIT_LOG_DIR", tempfile.mkdtemp(prefix="lrp-audit-logs-"))  # not ~/.cache
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# in-process flows start Prefect's temporary server; on busy shared cores it can need more than 20 s
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers",
        "requires_tool(*names, install=None): needs a system executable; skips where absent, fails with CI=true",
    )
    config.addinivalue_line(
        "markers",
        "requires_venv(name): needs a reference environment (tests/reference_venv.py); skips where absent, "
        "fails with CI=true",
    )


def pytest_runtest_setup(item) -> None:
    """Before any fixture: a test marked ``requires_tool`` (``requires_venv``) skips, or fails in CI,
    without its tool (reference environment)."""
    from tests.reference_venv import require_venv
    from tests.system_tools import require_tool

    for mark in item.iter_markers("requires_tool"):
        require_tool(*mark.args, install=mark.kwargs.get("install"))
    for mark in item.iter_markers("requires_venv"):
        require_venv(*mark.args)
