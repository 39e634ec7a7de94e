"""A command-line run starts without urllib3's SOCKS warning, in its own process and in the processes it
starts (Ray workers, the Prefect server inherit the environment)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOCKS = "import urllib3.contrib.socks"  # what warns when PySocks is absent (it is, in this venv)


def run(code: str) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter without the warning filters an earlier in-process CLI call may have exported."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120, env=env)


def test_the_warning_exists_without_the_defaults():
    assert "SOCKS support in urllib3" in run(f"try:\n    {SOCKS}\nexcept ImportError:\n    pass").stderr


def test_no_socks_warning_in_the_run_or_its_children():
    code = (
        "import subprocess, sys\n"
        "from flows.cli.environment import quiet_defaults\n"
        "quiet_defaults()\n"
        f"try:\n    {SOCKS}\nexcept ImportError:\n    pass\n"
        f"child = subprocess.run([sys.executable, '-c', 'try:\\n    {SOCKS}\\nexcept ImportError:\\n    pass'],"
        " capture_output=True, text=True)\n"
        "sys.stderr.write(child.stderr)\n"
    )
    proc = run(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "SOCKS" not in proc.stderr, proc.stderr
