"""Environment defaults of a command-line run: no usage reporting, patient server start.

Shared by every command that starts Prefect or Ray (``run``, ``spray``)."""

from __future__ import annotations

import os
import warnings

SOCKS_WARNING = "SOCKS support in urllib3"
"""urllib3 warns on import of its SOCKS module when PySocks is absent; a run uses no SOCKS proxy, and the
warning at start (from the driver or a Ray worker) only looked like a problem."""
DASHBOARD_ENV = "LRP_AUDIT_RAY_DASHBOARD"  # read by lrp_tasks.cluster.local_ray (not imported here: it imports Ray)


def quiet_defaults() -> None:
    """No usage reporting from a command-line run unless the user asked for it."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Prefect's default (20 s) is too short for a loaded machine: the run would fail before it began
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    warnings.filterwarnings("ignore", message=SOCKS_WARNING)
    ignore = f"ignore:{SOCKS_WARNING}"  # and in every process started from here (Ray workers, the server)
    inherited = os.environ.get("PYTHONWARNINGS", "")
    if ignore not in inherited.split(","):
        os.environ["PYTHONWARNINGS"] = f"{inherited},{ignore}" if inherited else ignore
