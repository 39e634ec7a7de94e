"""The audit flow's closing report: report.html in the store, the per-class table in the artifact,
and `compare_with` (a path, or `previous`: the last successful run of the same deployment)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from flows.audit import audit
from flows.cli import main
from flows.compare import CompareWithError, config_tag, run_store
from flows.progress import add_stage_listener, remove_stage_listener
from lrp_tasks.config import parse_config
from lrp_tasks.config.roots import ROOTS_ENV
from lrp_tasks.report.document import COMPARISON_DIR
from tests.digits_audit import digits_audit_config
from tests.report.demo_audits import write_demo_audit

pytestmark = pytest.mark.integration

SETTINGS = {"shard_size": 128, "batch_size": 128, "storage": {"keep_input": True}, "ray": {"workers": 1}}


def _artifact(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), sort=ArtifactSort.CREATED_DESC, limit=1
        )
    return str(found[0].data)


@pytest.fixture(autouse=True)
def _form_may_use_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """These in-process ``audit(config=...)`` calls are form runs: their tmp outputs are allowed roots."""
    monkeypatch.setenv(ROOTS_ENV, str(tmp_path))


def test_flow_writes_report_and_compares_with_a_given_audit(tmp_path: Path, capsys) -> None:
    before = write_demo_audit(tmp_path / "before", composite="EpsilonAlpha2Beta1")
    settings = digits_audit_config(tmp_path / "after", "report-flow", **SETTINGS)
    config_path = tmp_path / "after.yaml"
    config_path.write_text(yaml.safe_dump(settings))
    assert main(["run", str(config_path), "--compare-with", str(before), "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["report"] == str(tmp_path / "after" / "report.html") and os.path.exists(result["report"])
    assert result["comparison"]["samples_compared"] == 360
    table = pd.read_parquet(tmp_path / "after" / COMPARISON_DIR / "comparison.parquet")
    assert len(table) == 360 and table["cosine"].lt(0.999).all()  # another composite: other maps
    html = Path(result["report"]).read_text()
    assert 'id="comparison"' in html and 'id="per-class"' in html
    text = _artifact("audit-report-flow")
    assert "## Per class" in text and "| class | labelled | correct | accuracy |" in text
    assert "report.html" in text and "predictions changed" in text
    # an audit of other samples: the run still succeeds, the artifact says why nothing was compared
    other = write_demo_audit(tmp_path / "train", dataset={"kind": "digits", "split": "train"})
    stages: list[str] = []
    add_stage_listener(stages.append)
    try:
        again = audit(config=parse_config(settings), compare_with=str(other))
    finally:
        remove_stage_listener(stages.append)
    assert [s.split(" (")[0].split(" in ")[0] for s in stages] == ["writing the report", "report written"]
    assert "comparison" not in again and os.path.exists(again["report"])
    assert "could not compare with" in _artifact("audit-report-flow") and "different datasets" in _artifact(
        "audit-report-flow"
    )
    with pytest.raises(CompareWithError, match="belongs to no deployment"):
        audit(config=parse_config(settings), compare_with="previous")


def test_previous_compares_with_the_last_completed_run_of_the_deployment_and_config(
    tmp_path: Path, monkeypatch
) -> None:
    from prefect import flow as prefect_flow
    from prefect.client.orchestration import get_client
    from prefect.states import Completed, Failed

    base = tmp_path / "nightly"
    cfg = parse_config(digits_audit_config(base, "nightly", **SETTINGS))
    other = parse_config(digits_audit_config(tmp_path / "adhoc", "adhoc", **{**SETTINGS, "shard_size": 64}))
    same = [config_tag(cfg, str(base))]
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("audit")
        deployment_id = client.create_deployment(flow_id=flow_id, name=f"test-{tmp_path.name}")
        older = client.create_flow_run_from_deployment(deployment_id, tags=same)
        client.set_flow_run_state(older.id, Completed(), force=True)
        previous = client.create_flow_run_from_deployment(deployment_id, tags=same)
        client.set_flow_run_state(previous.id, Completed(), force=True)
        failed = client.create_flow_run_from_deployment(deployment_id, tags=same)  # failed runs: never compared
        client.set_flow_run_state(failed.id, Failed(), force=True)
        # an ad-hoc run of the same deployment with another config (--param config_path=...), the newest
        adhoc = client.create_flow_run_from_deployment(deployment_id, tags=[config_tag(other, str(tmp_path / "adhoc"))])
        client.set_flow_run_state(adhoc.id, Completed(), force=True)
        untagged = client.create_flow_run_from_deployment(deployment_id)  # a run from before the tags
        client.set_flow_run_state(untagged.id, Completed(), force=True)
    write_demo_audit(Path(run_store(str(base), str(previous.id))))  # the store the previous run left

    monkeypatch.setenv("PREFECT__RUNTIME__DEPLOYMENT__ID", str(deployment_id))
    result = audit(config=cfg, compare_with="previous")
    here = Path(result["store"])
    assert here.parent == base / "runs" and here.name not in (str(previous.id), str(older.id))
    comparison = result["comparison"]
    assert comparison["samples_compared"] == 360 and comparison["predictions_changed"] == 0
    assert comparison["cosine_min"] == pytest.approx(1.0, abs=1e-6)  # same model, same data, same composite
    meta = pd.read_json(here / COMPARISON_DIR / "comparison.json", typ="series")
    assert meta["audit_a"]["path"] == run_store(str(base), str(previous.id))
    assert "compared with the previous successful run" in _artifact("audit-nightly")
    with get_client(sync_client=True) as client:  # this run carries its config's tag: the next one finds it
        assert same[0] in client.read_flow_run(here.name).tags
    assert prefect_flow  # imported for the flow registry side effect only
