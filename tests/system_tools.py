"""System tools a test needs (docker-compose, a browser): skip with a visible reason where one is
absent, but FAIL when ``CI`` is true, where ``.ci/run`` installs them and a skip would hide a gap.

Use the marker, which skips before any fixture runs::

    @pytest.mark.requires_tool("docker-compose", install="apt-get install -y docker-compose")

or call :func:`require_tool` where the path is needed (it returns it). Several names are
alternatives (``require_tool("chromium", "chromium-browser", install=...)``).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

CI_TRUE = {"1", "true", "yes"}


def in_ci() -> bool:
    """``CI=true`` (set by CI services and by ``.ci/run``): missing tools fail instead of skipping."""
    return os.environ.get("CI", "").strip().lower() in CI_TRUE


def find_tool(*names: str) -> str | None:
    """Path of the first executable found: the virtualenv's bin dir first, then PATH."""
    venv_bin = str(Path(sys.executable).parent)
    for name in names:
        found = shutil.which(name, path=venv_bin) or shutil.which(name)
        if found:
            return found
    return None


def require_tool(*names: str, install: str | None = None) -> str:
    """The tool's path; else skip naming it and how to install it (fail instead under ``CI=true``)."""
    if not names:
        raise TypeError("require_tool needs at least one executable name")
    found = find_tool(*names)
    if found:
        return found
    wanted = " or ".join(f"`{n}`" for n in names)
    message = f"system tool {wanted} not found on PATH" + (f"; install it: {install}" if install else "")
    if in_ci():
        pytest.fail(f"{message} (CI=true: a missing tool fails the test; .ci/run installs it)", pytrace=False)
    pytest.skip(message)
