"""docs/config.md's torchvision route (``builder: torchvision.models:resnet50`` + a weights file)
explained by the engine. torchvision cannot be loaded beside this project's CPU torch wheel from
PyPI, so the check runs in ``.venv-zennit`` (torch + matching torchvision), like the zennit
cross-check."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ZENNIT_PYTHON = ROOT / ".venv-zennit" / "bin" / "python"


@pytest.mark.integration
def test_torchvision_resnet50_from_a_state_dict_is_explained() -> None:
    if not ZENNIT_PYTHON.exists():
        pytest.skip("torchvision environment missing: run `bash scripts/setup.sh --with-zennit` (CI does)")
    proc = subprocess.run(
        [str(ZENNIT_PYTHON), str(Path(__file__).with_name("torchvision_route.py"))],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    assert row["analyzer"] == "LRP" and row["shape"] == [2, 3, 64, 64]  # one analyzer for every model
    assert row["finite"] and row["same_logits"], row
