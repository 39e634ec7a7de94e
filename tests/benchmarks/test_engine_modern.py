"""benchmarks/engine_modern.py runs as documented (here without LXT, the smallest case)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_modern_engine_benchmark_prints_ratios_to_forward_backward():
    out = subprocess.run(
        [sys.executable, "benchmarks/engine_modern.py", "--only", "convnext", "--repeats", "1", "--batch", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "x forward+backward" in out.stdout and "lrp-audit LRP" in out.stdout
    assert "peak memory, batch 1" in out.stdout
