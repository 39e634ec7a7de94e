"""Issue 23: ``lrp-audit run`` on a finished audit (every shard committed, same config, model and
data) reports and exits without starting Prefect or Ray, with the result the flow gives; anything
due (a changed config, damage, --fresh, a comparison) still goes through the checks and the flow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from flows.finished import ALWAYS_FLOW_ENV

from .audit_helpers import ROOT, result_json, run_cli, write_config

NO_SERVER_NO_RAY = (
    "import sys; from flows.cli import main; rc = main(['run', sys.argv[1], '--no-progress']); "
    "print('IMPORTED', rc, sorted({m.split('.')[0] for m in sys.modules} & {'prefect', 'ray'}))"
)


def test_a_finished_audit_reports_without_prefect_or_ray(tmp_path: Path) -> None:
    config = write_config(tmp_path, "finished", shard_size=120, batch_size=120)
    first = run_cli("run", str(config), "--no-progress")
    assert first.returncode == 0, first.stderr[-3000:]
    report = tmp_path / "audit" / "report.html"
    written = report.stat().st_mtime_ns

    through_flow = run_cli("run", str(config), "--no-progress", env={ALWAYS_FLOW_ENV: "1"})  # the old path
    assert through_flow.returncode == 0, through_flow.stderr[-3000:]
    expected = result_json(through_flow.stdout)
    assert "finished_without_flow" not in expected and expected["samples_explained"] == 0

    proc = subprocess.run([sys.executable, "-c", NO_SERVER_NO_RAY, str(config)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env={**os.environ})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "IMPORTED 0 []" in proc.stdout  # neither Prefect nor Ray was even imported
    result = json.loads(proc.stdout[proc.stdout.index("{") : proc.stdout.rindex("}") + 1])
    assert result.pop("finished_without_flow") is True
    assert set(result) == set(expected)  # the same result, key for key ...
    for key in ("audit", "store", "audit_id", "shards", "shards_skipped", "samples_explained", "explanations",
                "accuracy", "report"):
        assert result[key] == expected[key], key  # ... and value for value
    assert "nothing to explain" in proc.stderr and "no Prefect server or Ray started" in proc.stderr
    assert report.stat().st_mtime_ns > written  # the report is written again, as the flow does


def test_a_changed_config_is_still_refused_and_fresh_still_runs_the_flow(tmp_path: Path) -> None:
    config = write_config(tmp_path, "changed", shard_size=180, batch_size=180)
    assert run_cli("run", str(config), "--no-progress").returncode == 0
    changed = config.with_name("other.yaml")
    changed.write_text(config.read_text().replace("EpsilonPlusFlat", "EpsilonPlus"))
    refused = run_cli("run", str(changed), "--no-progress")
    assert refused.returncode != 0 and "--fresh" in refused.stderr
    fresh = run_cli("run", str(config), "--no-progress", "--fresh")
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    result = result_json(fresh.stdout)
    assert "finished_without_flow" not in result and result["samples_explained"] == 360
