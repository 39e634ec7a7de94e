"""A store's identity through the command line: what does not change results (batch size, where the
dataset file lives, how many workers) resumes the same store; what does (the dataset's content) is
refused. And one run loads the model in the driver once."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from lrp_tasks.sources import digits_arrays, digits_split
from lrp_tasks.store import AuditLayout, open_audit
from lrp_tasks.store.verify import uncommit_shards
from tests.digits_audit import digits_audit_config

from .audit_helpers import ROOT, result_json, run_cli, store_content, write_config

pytestmark = pytest.mark.integration

REDONE = (1, 4, 7)


def _array_config(tmp: Path, data: Path, batch_size: int) -> Path:
    cfg = digits_audit_config(
        tmp / "audit",
        "identity",
        dataset={"kind": "array", "path": str(data / "x.npy"), "labels_path": str(data / "y.npy")},
        shard_size=40,
        batch_size=batch_size,
        ray={"workers": 2, "cpus_per_worker": 1},
    )
    path = tmp / "identity.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_resume_after_batch_size_file_move_and_workers_change_keeps_the_store(tmp_path) -> None:
    images, labels = digits_arrays()
    test = digits_split("test")
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "x.npy", images[test])
    np.save(data / "y.npy", labels[test])
    out = tmp_path / "audit"

    first = run_cli("run", str(_array_config(tmp_path, data, batch_size=40)), "--no-progress")
    assert first.returncode == 0, first.stderr[-3000:]
    expected = store_content(out)
    uncommit_shards(AuditLayout(str(out)), REDONE)  # as if the run had stopped before these

    moved = tmp_path / "moved-data"
    shutil.move(data, moved)
    config = _array_config(tmp_path, moved, batch_size=8)  # another batch size, the files elsewhere
    resumed = run_cli("run", str(config), "--no-progress", "--workers", "1")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    result = result_json(resumed.stdout)
    assert result["shards_skipped"] == result["shards"] - len(REDONE)
    assert result["samples_explained"] == 40 * len(REDONE)
    again = store_content(out)
    assert again["committed"] == expected["committed"]
    # the redone shards were batched differently: equal to float round-off (docs/store.md), the rest as is
    scale = float(np.abs(expected["relevance"]).max())
    np.testing.assert_allclose(again["relevance"], expected["relevance"], rtol=0, atol=1e-5 * scale)
    exact = ["sample_index", "sample_id", "label", "predicted", "target", "target_rank", "shard_id"]
    assert again["summaries"][exact].equals(expected["summaries"][exact])
    np.testing.assert_allclose(
        again["summaries"]["relevance_sum"], expected["summaries"]["relevance_sum"], rtol=1e-5, atol=1e-6
    )

    changed = np.load(moved / "x.npy")
    changed[0, 0, 0, 0] += 0.5  # another dataset: one pixel
    np.save(moved / "x.npy", changed)
    refused = run_cli("run", str(config), "--no-progress")
    assert refused.returncode == 1
    assert "dataset changed" in refused.stderr and "x.npy" in refused.stderr
    assert open_audit(str(out)).committed_shards == set(expected["committed"])


COUNT_LOADS = r"""
import json, sys
import lrp_tasks.audit.prepare as prepare
from flows.cli import main

loads = []
original = prepare.load_model
def counting(spec, *args, **kwargs):
    loads.append(spec)
    return original(spec, *args, **kwargs)
prepare.load_model = counting
code = main(["run", sys.argv[1], "--no-progress"])
print("LOADS", json.dumps({"code": code, "driver_model_loads": len(loads)}), file=sys.stderr)
"""


def test_a_run_loads_the_model_once_in_the_driver(tmp_path) -> None:
    config = write_config(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", COUNT_LOADS, str(config)], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    line = next((ln for ln in proc.stderr.splitlines() if ln.startswith("LOADS ")), None)
    assert line is not None, proc.stderr[-3000:]
    counted = json.loads(line.removeprefix("LOADS "))
    assert counted == {"code": 0, "driver_model_loads": 1}  # pre-flight, handed over to the flow
    result = result_json(proc.stdout)
    assert result["samples_explained"] == 360
