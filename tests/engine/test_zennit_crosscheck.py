"""The five presets in zennit mode equal zennit 1.0 number for number on the seed CNN (f32)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ZENNIT_PYTHON = ROOT / ".venv-zennit" / "bin" / "python"


@pytest.mark.integration
def test_presets_match_zennit():
    if not ZENNIT_PYTHON.exists():
        pytest.skip("zennit environment missing: run `bash scripts/setup.sh --with-zennit` (CI does)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [str(ZENNIT_PYTHON), str(Path(__file__).with_name("zennit_crosscheck.py"))],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert {r["preset"] for r in rows} == {
        "EpsilonGammaBox", "EpsilonPlus", "EpsilonAlpha2Beta1", "EpsilonPlusFlat", "EpsilonAlpha2Beta1Flat"
    }
    for row in rows:
        assert row["max_abs_rel_err"] < 1e-4, row
