"""conf/planted.yaml end to end: the audit flow runs SpRAy after its last shard, SpRAy finds the planted
stamp; then ``lrp-audit spray`` on the same audit (resume, refused change, recompute, bad requests)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from lrp_tasks.analysis import read_spray
from tests.flows.audit_helpers import ROOT, result_json, run_cli

pytestmark = pytest.mark.integration
# a busy machine can take more than Prefect's default 20 s to start the temporary server
SLOW_START = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}


def cli(*args: str, timeout: float = 600):
    return run_cli(*args, env=SLOW_START, timeout=timeout)


def precision_recall(spray, stamped_ids: set[int]) -> tuple[float, float, int]:
    rows = spray.samples[spray.samples["class"] == 3]
    top = rows[rows["cluster_rank"] == 1]
    found = set(top["sample_index"].tolist())
    hits = len(found & stamped_ids)
    return hits / len(found), hits / len(stamped_ids), int(rows["k"].iloc[0])


@pytest.fixture(scope="module")
def planted_audit(tmp_path_factory):
    out = tmp_path_factory.mktemp("planted") / "audit"
    proc = cli("run", "conf/planted.yaml", "--output", str(out), "--no-progress", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, result_json(proc.stdout)


def test_the_planted_audit_finds_the_stamp_as_the_first_cluster_of_class_3(planted_audit):
    out, result = planted_audit
    assert result["spray"]["classes_skipped"] == []
    assert sorted(o["class"] for o in result["spray"]["classes_run"]) == list(range(10))
    with np.load(ROOT / "data" / "planted" / "digits32_stamped.npz") as data:
        stamped = set(np.flatnonzero(data["stamped"]).tolist())
    precision, recall, k = precision_recall(read_spray(out), stamped)
    print(f"planted audit: class 3 k={k}, stamp cluster precision {precision:.3f} recall {recall:.3f}")
    assert precision >= 0.9 and recall >= 0.9


def test_spray_cli_resumes_refuses_changes_and_names_bad_requests(planted_audit):
    out, _ = planted_audit
    again = cli("spray", str(out), "--no-ray", "--classes", "3")
    assert again.returncode == 0, again.stderr[-3000:]
    assert result_json(again.stdout)["classes_skipped"] == [3]

    changed = cli("spray", str(out), "--no-ray", "--classes", "3", "--k", "4")
    assert changed.returncode == 1
    assert "another config" in changed.stderr and "k: 'auto' -> 4" in changed.stderr

    unknown = cli("spray", str(out), "--no-ray", "--classes", "3,42")
    assert unknown.returncode == 1 and "unknown class(es) [42]" in unknown.stderr

    redo = cli("spray", str(out), "--classes", "3", "--k", "4", "--by", "label", "--recompute")
    assert redo.returncode == 0, redo.stderr[-3000:]
    spray = read_spray(out)
    assert spray.classes == list(range(10))  # the other classes keep their results (and their config)
    assert spray.config_of(3)["by"] == "label" and spray.config_of(5)["by"] == "predicted"
    assert (spray.samples.loc[spray.samples["class"] == 3, "k"] == 4).all()


def test_an_audit_without_committed_shards_is_refused_by_the_cli(tmp_path):
    from tests.analysis.spray_helpers import write_audit

    write_audit(tmp_path / "empty", shards=[])
    proc = cli("spray", str(tmp_path / "empty"), "--no-ray")
    assert proc.returncode == 1 and "no committed shards" in proc.stderr


def test_the_planted_config_validates_and_carries_its_analysis_section():
    cfg = yaml.safe_load((ROOT / "conf" / "planted.yaml").read_text())
    assert cfg["analysis"]["spray"]["k"] == "auto"
    proc = cli("validate", "conf/planted.yaml")
    assert proc.returncode == 0, proc.stderr
