"""The reference environments the cross-check tests run their reference library in, each beside
the project's own ``.venv`` (their pins never touch the project's):

* ``zennit``: ``.venv-zennit``, zennit 1.0 with torch and a matching torchvision
  (tests/engine/test_zennit_crosscheck.py, tests/sources/test_torchvision_route.py);
* ``quantus``: ``.venv-quantus``, Quantus 0.6 with the project's torch pin
  (tests/metrics/test_quantus_equality.py);
* ``corelay``: ``.venv-corelay``, CoRelAy 1.0 (tests/analysis/test_corelay_crosscheck.py);
* ``virelay``: ``.venv-virelay``, ViRelAy 0.6.1 (tests/analysis/test_virelay.py);
* ``lxt``: ``.venv-lxt``, LXT 2.1 with torchvision, transformers 4.52.4 and zennit
  (tests/engine/test_lxt_crosscheck.py).

``bash scripts/setup.sh --with-references`` (the README's test command; ``--with-zennit`` is an
alias) creates all five; ``--with-quantus``, ``--with-corelay``, ``--with-virelay``, ``--with-lxt``
one each.

Where one is missing, a test that needs it skips with that hint, but FAILS when ``CI`` is true
(:func:`tests.system_tools.in_ci`), where ``.ci/run`` creates them all and a skip would hide a gap.
Mark the test (the check runs before any fixture, so an expensive fixture is not built for
nothing)::

    pytestmark = needs_venv("corelay")

or call :func:`require_venv`; :func:`run_in_venv` runs a script in the environment (checking it
first) and returns its stdout, :func:`run_json_lines` the JSON objects it printed one per line.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.system_tools import in_ci

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ReferenceVenv:
    name: str
    what: str
    setup: str
    """The ``scripts/setup.sh`` option that creates it alone (``--with-references`` creates all)."""

    @property
    def path(self) -> Path:
        return ROOT / f".venv-{self.name}"

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"


SETUP_ALL = "bash scripts/setup.sh --with-references"

VENVS = {
    venv.name: venv
    for venv in (
        ReferenceVenv("zennit", "zennit 1.0 and torchvision", SETUP_ALL),
        ReferenceVenv("quantus", "Quantus 0.6", "bash scripts/setup.sh --with-quantus"),
        ReferenceVenv("corelay", "CoRelAy 1.0", "bash scripts/setup.sh --with-corelay"),
        ReferenceVenv("virelay", "ViRelAy", "bash scripts/setup.sh --with-virelay"),
        ReferenceVenv("lxt", "LXT 2.1 and torchvision", "bash scripts/setup.sh --with-lxt"),
    )
}


def venv_python(name: str) -> Path:
    """Path of the environment's interpreter (whether or not it exists)."""
    return VENVS[name].python


def require_venv(name: str) -> Path:
    """The environment's interpreter; else skip saying how to create it (fail instead under ``CI=true``)."""
    venv = VENVS[name]
    if venv.python.exists():
        return venv.python
    message = f"reference environment .venv-{name} ({venv.what}) missing: run `{venv.setup}`"
    if venv.setup != SETUP_ALL:
        message += f" (`{SETUP_ALL}` creates all five)"
    if in_ci():
        pytest.fail(
            f"{message} (CI=true: a missing reference environment fails the test; .ci/run creates it)", pytrace=False
        )
    pytest.skip(message)


def needs_venv(name: str) -> pytest.MarkDecorator:
    """Marker: the test needs the named environment (checked by tests/conftest.py before fixtures)."""
    if name not in VENVS:
        raise KeyError(f"no reference environment {name!r}; known: {sorted(VENVS)}")
    return pytest.mark.requires_venv(name)


def run_in_venv(name: str, script: Path | str, *args: str, timeout: float = 600, project_on_path: bool = True) -> str:
    """Run ``script`` with the environment's interpreter from the repository root; return its stdout.

    ``project_on_path``: ``PYTHONPATH`` is the repository root, so the script imports ``lrp_tasks``
    and ``tests`` (zennit, Quantus, torchvision); ``False`` leaves the environment as it is, for
    references that are handed arrays, not the project (CoRelAy, ViRelAy). A non-zero exit fails
    the test with the end of its stderr.
    """
    python = require_venv(name)
    env = {**os.environ, "PYTHONPATH": str(ROOT)} if project_on_path else None
    proc = subprocess.run(
        [str(python), str(script), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def run_json_lines(name: str, script: Path | str, *args: str, **kwargs) -> list[dict]:
    """:func:`run_in_venv`, then the JSON objects of the stdout lines that start with ``{``, in order."""
    return [
        json.loads(line) for line in run_in_venv(name, script, *args, **kwargs).splitlines() if line.startswith("{")
    ]
