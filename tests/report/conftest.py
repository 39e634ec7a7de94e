"""Two demo audits of the same 360 digits (two composites), built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.report.demo_audits import write_demo_audit


@pytest.fixture(scope="session")
def demo_audit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_audit(tmp_path_factory.mktemp("report") / "epsilon-plus-flat")


@pytest.fixture(scope="session")
def alpha_beta_audit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_audit(tmp_path_factory.mktemp("report") / "alpha2-beta1", composite="EpsilonAlpha2Beta1")
