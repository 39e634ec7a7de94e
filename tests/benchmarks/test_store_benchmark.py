"""benchmarks/store.py runs as documented and prints each writer against np.save + fsync."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_store_benchmark_prints_every_writer_against_np_save_fsync(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "benchmarks/store.py",
            "--n",
            "16",
            "--shape",
            "3",
            "16",
            "16",
            "--shard-size",
            "8",
            "--classes",
            "10",
            "--repeat",
            "2",
            "--dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    for dtype in ("float32", "float16"):
        assert f"np.save + fsync {dtype}" in out
        line = next(row for row in out.splitlines() if row.startswith(f"AuditStore {dtype} lz4 + summaries"))
        assert float(line.split()[-2]) > 0  # the ratio to np.save + fsync of the same bytes
    assert "summaries alone" in out and "2 interleaved rounds" in out
