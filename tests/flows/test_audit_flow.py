"""The audit flow end to end on real Prefect + a real local Ray: run, skip on re-run, survive a
killed worker, fail clearly after retries, resume after the flow process is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lrp_tasks.cluster.pool import ClusterResourceError, plan_workers
from lrp_tasks.config import RaySpec
from lrp_tasks.store import open_audit

from .audit_helpers import ROOT, result_json, run_cli, store_content, write_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One uninterrupted run, shared by the tests that compare against it."""
    tmp = tmp_path_factory.mktemp("reference")
    proc = run_cli("run", str(write_config(tmp)), "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "audit", result_json(proc.stdout)


def test_full_run_then_rerun_skips_everything(reference, tmp_path):
    out, result = reference
    assert result["shards"] == 6 and result["shards_skipped"] == 0
    assert result["samples_explained"] == 360 and result["accuracy"] > 0.97
    frame = open_audit(str(out)).summaries
    assert sorted(frame["sample_index"]) == list(range(360))
    before = {p.name: p.read_bytes() for p in (out / "summaries").iterdir()}
    again = run_cli("run", str(out.parent / "t.yaml"), "--no-progress")
    assert again.returncode == 0, again.stderr[-3000:]
    second = result_json(again.stdout)
    assert second["shards_skipped"] == 6 and second["samples_explained"] == 0
    assert {p.name: p.read_bytes() for p in (out / "summaries").iterdir()} == before
    summary = run_cli("summary", str(out))
    assert summary.returncode == 0 and "committed shards: 6" in summary.stdout and "accuracy" in summary.stdout


def test_killed_worker_is_retried_and_every_sample_is_explained_once(reference, tmp_path):
    proc = run_cli("run", str(write_config(tmp_path)), "--no-progress", env={"LRP_AUDIT_TEST_CRASH_SHARD": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "audit"
    assert (out / ".test-crashed-shard-2").exists()  # the first attempt really died
    frame = open_audit(str(out)).summaries
    assert sorted(frame["sample_index"]) == list(range(360))
    pd.testing.assert_frame_equal(store_content(out)["summaries"], store_content(reference[0])["summaries"])


def test_shard_failing_every_attempt_names_the_shard_and_keeps_the_rest(tmp_path):
    env = {"LRP_AUDIT_TEST_CRASH_SHARD": "4", "LRP_AUDIT_TEST_CRASH_ALWAYS": "1"}
    proc = run_cli("run", str(write_config(tmp_path, retries=1)), "--no-progress", env=env)
    assert proc.returncode == 1
    assert "1 shard(s) failed" in proc.stderr and "shard 4" in proc.stderr and "after 2 attempts" in proc.stderr
    assert "died" in proc.stderr  # the shards queued behind it on the dying worker were not charged
    assert open_audit(str(tmp_path / "audit")).committed_shards == {0, 1, 2, 3, 5}


def test_flow_killed_midway_resumes_to_the_same_store(reference, tmp_path):
    """Killed between shards and resumed, the store is bit-identical to the uninterrupted reference:
    same machine, same shards of 64, same batches of 64, same threads per worker. (Other batchings agree only to
    float32 round-off: tests/audit/test_explainer.py states and checks that tolerance.)"""
    config = write_config(tmp_path, ray={"workers": 1, "cpus_per_worker": 1})  # shards/batches as the reference
    out = tmp_path / "audit"
    env = {**os.environ, "LRP_AUDIT_TEST_SHARD_SECONDS": "1.5"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows", "run", str(config), "--no-progress"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            parts = list((out / "summaries").glob("part-*.parquet")) if (out / "summaries").exists() else []
            if len(parts) >= 2:
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.1)
        else:
            pytest.fail("no shard committed in time")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_at = open_audit(str(out)).committed_shards
    assert 2 <= len(killed_at) < 6
    resumed = run_cli("run", str(config), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    result = result_json(resumed.stdout)
    assert result["shards_skipped"] >= len(killed_at) and result["samples_explained"] <= 360 - 64 * len(killed_at)
    mine, ref = store_content(out), store_content(reference[0])
    pd.testing.assert_frame_equal(mine["summaries"], ref["summaries"], check_exact=True)
    np.testing.assert_array_equal(mine["relevance"], ref["relevance"])  # bit for bit


def test_worker_plan_falls_back_to_cpu_and_refuses_impossible_requests():
    plan = plan_workers(RaySpec(workers=4, cpus_per_worker=1, gpus_per_worker=1), {"CPU": 2.0})
    assert plan.num_gpus == 0 and plan.workers == 2
    assert any("no GPU" in n for n in plan.notes) and any("fits 2 of the 4" in n for n in plan.notes)
    with pytest.raises(ClusterResourceError, match="GPU"):
        plan_workers(RaySpec(workers=1, gpus_per_worker=2), {"CPU": 8.0, "GPU": 1.0})
    with pytest.raises(ClusterResourceError, match="CPU"):
        plan_workers(RaySpec(workers=1, cpus_per_worker=4), {"CPU": 2.0})


def test_bad_samples_fail_their_shard_at_once_naming_them(tmp_path):
    """NaN in the data: no retries (they would fail the same way), the message names the samples."""
    from lrp_tasks.sources import digits_split
    from lrp_tasks.sources.digits import digits_arrays

    images, _ = digits_arrays()
    data = (images[digits_split("test")][:96] / 16.0).astype("float32").reshape(-1, 1, 8, 8)
    data[70, 0, 3, 3] = float("nan")
    np.save(tmp_path / "digits.npy", data)
    config = write_config(tmp_path, dataset={"kind": "array", "path": str(tmp_path / "digits.npy")}, retries=2)
    proc = run_cli("run", str(config), "--no-progress")
    assert proc.returncode == 1
    assert "shard 1" in proc.stderr and "ids ['70']" in proc.stderr and "after 1 attempts" in proc.stderr
    assert open_audit(str(tmp_path / "audit")).committed_shards == {0}
