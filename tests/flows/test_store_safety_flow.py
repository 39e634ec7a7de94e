"""The audit command line never loses, mixes or corrupts a store: a user's directory is refused, a
second run on a store fails at once naming the first, a store resumes with other workers after being
moved, and damaged shards are found by ``verify`` and redone by ``run``."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from lrp_tasks.store import lock_holder, open_audit

from .audit_helpers import ROOT, result_json, run_cli, store_content, write_config

pytestmark = pytest.mark.integration

SMALL_SHARDS = {"shard_size": 32, "batch_size": 32}


def test_fresh_never_deletes_a_users_files(tmp_path) -> None:
    user = tmp_path / "x"
    (user / "summaries").mkdir(parents=True)
    (user / "summaries" / "important.csv").write_text("data")
    config = write_config(tmp_path)
    for extra in (["--fresh"], []):
        proc = run_cli("run", str(config), "--no-progress", "--output", str(user), *extra, timeout=120)
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert "is not an lrp-audit store" in proc.stderr and "Nothing was written or deleted" in proc.stderr
    assert (user / "summaries" / "important.csv").read_text() == "data"
    assert sorted(p.name for p in user.rglob("*")) == ["important.csv", "summaries"]


def _wait_for(predicate, proc: subprocess.Popen, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        assert proc.poll() is None, f"the run ended before {what}"
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def test_one_writer_resume_elsewhere_with_other_workers_and_damage_redone(tmp_path) -> None:
    (tmp_path / "ref").mkdir()
    reference = run_cli("run", str(write_config(tmp_path / "ref", **SMALL_SHARDS)), "--no-progress")
    assert reference.returncode == 0, reference.stderr[-3000:]
    expected = store_content(tmp_path / "ref" / "audit")

    # A run in progress holds the store; a second run fails at once naming it.
    config = write_config(tmp_path, **SMALL_SHARDS)
    out = tmp_path / "audit"
    first = subprocess.Popen(
        [sys.executable, "-m", "flows", "run", str(config), "--no-progress"],
        cwd=ROOT,
        env={**os.environ, "LRP_AUDIT_TEST_SHARD_SECONDS": "6.0"},  # 12 shards on 2 workers: ~36 s
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for(lambda: len(list(out.glob("summaries/part-*.parquet"))) >= 2, first, "two shards were committed")
        assert lock_holder(out)["pid"] == first.pid
        began = time.monotonic()
        second = run_cli("run", str(config), "--no-progress", "--fresh", timeout=120)
        assert second.returncode == 1
        assert "being written by another run" in second.stderr and f"pid {first.pid}" in second.stderr
        assert time.monotonic() - began < 60  # it did not wait for the first run (60 s: a loaded CI machine)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    killed_at = open_audit(str(out)).committed_shards
    assert 2 <= len(killed_at) < 12

    # Moved, and resumed with one worker instead of two: operational changes, same audit.
    moved = tmp_path / "moved"
    shutil.move(out, moved)
    resumed = run_cli("run", str(config), "--no-progress", "--workers", "1", "--output", str(moved))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert result_json(resumed.stdout)["shards_skipped"] >= len(killed_at)
    mine = store_content(moved)
    pd.testing.assert_frame_equal(mine["summaries"], expected["summaries"])
    assert np.array_equal(mine["relevance"], expected["relevance"])

    # Damage: a deleted chunk, an empty chunk, a truncated Parquet part.
    (moved / "relevance.zarr" / "relevance" / "c.1.0.0.0").unlink()
    (moved / "relevance.zarr" / "logits" / "c.3.0").write_bytes(b"")
    part = moved / "summaries" / "part-000004.parquet"
    part.write_bytes(part.read_bytes()[:100])
    check = run_cli("verify", str(moved), timeout=120)
    assert check.returncode == 1
    for shard in (1, 3, 4):
        assert f"shard {shard}: DAMAGED" in check.stdout
    redo = run_cli("run", str(config), "--no-progress", "--output", str(moved))
    assert redo.returncode == 0, redo.stderr[-3000:]
    result = result_json(redo.stdout)
    assert result["shards_redone"] == [1, 3, 4] and result["samples_explained"] == 3 * 32
    again = store_content(moved)
    pd.testing.assert_frame_equal(again["summaries"], expected["summaries"])
    assert np.array_equal(again["relevance"], expected["relevance"])
    assert run_cli("verify", str(moved), timeout=120).returncode == 0
