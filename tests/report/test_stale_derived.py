"""Derived results belong to the audit they were built from: --fresh must not let them describe
another audit (issue 25, item 1)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from lrp_tasks.analysis import SprayStoreError, read_spray
from lrp_tasks.report import build_report, open_audit, write_report
from lrp_tasks.store import AuditStore
from tests.store import store_helpers
from tests.store.store_helpers import write_all


def make_spec(**overrides):
    config = {"model": {"builder": "tiny"}, "dataset": {"kind": "array"}, "composite": "epsilon_plus"}
    return store_helpers.make_spec(config=config, **overrides)


def _plant_spray(root, audit_id: str, shards: list[int]) -> None:
    """SpRAy results as lrp_tasks.analysis.results lays them out (spray.json + one class part)."""
    spray = root / "analysis" / "spray"
    (spray / "samples").mkdir(parents=True)
    identity = {"config": {}, "audit_id": audit_id, "committed_shards": shards}
    (spray / "spray.json").write_text(json.dumps({"format": 1, "digest": "d", "identity": identity}))
    frame = pd.DataFrame({"sample_index": [0, 1, 2, 3], "class": [0, 0, 0, 0], "cluster": [0, 0, 1, 1]})
    frame.to_parquet(spray / "samples" / "class-000000.parquet")


def test_fresh_drops_the_old_report_and_readers_refuse_the_old_spray_results(tmp_path) -> None:
    root = tmp_path / "audit"
    store = AuditStore.create_or_open(root, make_spec(audit_id="audit-old"))
    write_all(store)
    store.close()
    _plant_spray(root, "audit-old", [0, 1, 2])
    write_report(open_audit(str(root)))
    assert "Samples per cluster" in (root / "report.html").read_text()

    store = AuditStore.create_or_open(root, make_spec(audit_id="audit-new", dtype="float16"), mode="overwrite")
    write_all(store, only={0})
    store.close()
    assert not (root / "report.html").exists()  # the old audit's report went with it
    html = build_report(open_audit(str(root)))
    assert "Samples per cluster" not in html
    assert "built from audit &#x27;audit-old&#x27;, not this audit" in html or "built from audit 'audit-old'" in html
    with pytest.raises(SprayStoreError, match=r"built from audit 'audit-old'.*stale"):
        read_spray(root)


def test_spray_results_of_an_earlier_snapshot_are_marked(tmp_path) -> None:
    root = tmp_path / "audit"
    store = AuditStore.create_or_open(root, make_spec())
    write_all(store, only={0})
    _plant_spray(root, "audit-test", [0])
    write_all(store)
    store.close()
    html = build_report(open_audit(str(root)))
    assert "Samples per cluster" in html and "built from 1 committed shard(s); the audit now has 3" in html
