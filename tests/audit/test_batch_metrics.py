"""Perturbation metrics computed by the shard task: curves in Zarr, AOPCs in the summaries, the same
numbers as direct calls on the same batches, top-k explanations, config errors, and exactly-once under
a worker killed between its Zarr write and its commit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from lrp_tasks.audit.explainer import ShardExplainer
from lrp_tasks.audit.prepare import open_shard_explainer
from lrp_tasks.config import ConfigError, parse_config
from lrp_tasks.metrics import RegionPerturbation, aopc
from lrp_tasks.store import open_audit
from lrp_tasks.store.schema import METRIC_COLUMNS
from tests.digits_audit import ROOT, digits_audit_config

SHARD = 48
BATCH = 32
METRICS = {
    "region_perturbation": {"patch_size": 2, "steps": 16, "orders": ["morf", "lerf", "random"], "seed": 4},
    "pixel_flipping": {"steps": 24, "orders": ["morf", "random"], "baseline": "uniform", "seed": 1},
    "batch_size": 200,
}


def settings(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "shard_size": SHARD,
        "batch_size": BATCH,
        "storage": {"keep_input": False},
        "metrics": METRICS,
    }
    return digits_audit_config(tmp_path / "audit", "metrics-test", **{**base, **overrides})


def explainer(tmp_path: Path, **overrides: Any) -> ShardExplainer:
    return open_shard_explainer(parse_config(settings(tmp_path, **overrides)), device="cpu")


def test_curves_and_aopcs_are_stored_as_direct_calls_give_them(tmp_path) -> None:
    ex = explainer(tmp_path)
    assert ex.spec.metrics == {
        "region_perturbation_morf": 17,
        "region_perturbation_lerf": 17,
        "region_perturbation_random": 17,
        "pixel_flipping_morf": 25,
        "pixel_flipping_random": 25,
    }
    ex.explain_shard(0, 0, SHARD)

    rp = RegionPerturbation(2, 16, ("morf", "lerf", "random"), "black", seed=4)
    pf = RegionPerturbation(1, 24, ("morf", "random"), "uniform", seed=1)
    want: dict[str, list[np.ndarray]] = {name: [] for name in ex.spec.metrics}
    for lo in range(0, SHARD, BATCH):
        batch = ex.dataset.read(lo, min(lo + BATCH, SHARD))
        expl = ex.analyzer.analyze(batch.x, None, seed="one-hot")
        for prefix, metric in (("region_perturbation", rp), ("pixel_flipping", pf)):
            for order, c in metric.curves(ex.model, batch.x, expl.val, expl.output_selection, batch.index).items():
                want[f"{prefix}_{order}"].append(c.numpy())

    audit = open_audit(str(tmp_path / "audit"))
    assert audit.metric_names == list(ex.spec.metrics)
    frame = audit.summaries
    for name in ex.spec.metrics:
        curves = audit.metric_curves(name)
        assert curves.dims == ("sample", "step") and curves.dtype == np.float32
        assert curves["sample"].values.tolist() == list(range(SHARD))
        expected = np.concatenate(want[name])
        np.testing.assert_allclose(curves.values, expected, rtol=1e-5, atol=1e-5)
        metric, order = name.rsplit("_", 1)
        np.testing.assert_array_equal(frame[f"{metric}_aopc_{order}"].to_numpy(), aopc(curves.values))
    # Step 0 is the unperturbed logit the summaries report.
    np.testing.assert_allclose(audit.metric_curves("region_perturbation_morf").values[:, 0], frame["logit"], rtol=1e-5)
    for metric in ("region_perturbation", "pixel_flipping"):
        gap = frame[f"{metric}_aopc_morf"] - frame[f"{metric}_aopc_random"]
        np.testing.assert_array_equal(frame[f"{metric}_morf_minus_random"], gap)
    assert frame["pixel_flipping_aopc_lerf"].isna().all()  # not configured: NaN, never null


def test_without_metrics_the_columns_are_nan_and_no_curves_are_kept(tmp_path) -> None:
    ex = explainer(tmp_path, metrics={})
    assert ex.spec.metrics == {}
    ex.explain_shard(0, 0, SHARD)
    audit = open_audit(str(tmp_path / "audit"))
    assert audit.metric_names == []
    frame = audit.summaries
    assert all(frame[c].isna().all() and frame[c].dtype == np.float64 for c in METRIC_COLUMNS)
    assert "metrics" not in audit.layout_info


def test_top_k_explanations_get_one_curve_each(tmp_path) -> None:
    metrics = {"region_perturbation": {"patch_size": 4, "steps": 4, "orders": ["morf", "random"]}}
    ex = explainer(tmp_path, target={"kind": "top_k", "k": 2}, metrics=metrics)
    ex.explain_shard(0, 0, SHARD)
    audit = open_audit(str(tmp_path / "audit"))
    curves = audit.metric_curves("region_perturbation_morf")
    assert curves.dims == ("sample", "explanation", "step") and curves.shape == (SHARD, 2, 5)
    batch = ex.dataset.read(0, BATCH)
    expl = ex.analyzer.analyze(batch.x, None, seed="one-hot")
    top = torch.topk(expl.output, 2).indices
    rp = RegionPerturbation(4, 4, ("morf", "random"))
    for rank in range(2):
        from lrp_tasks.engine import analyze

        ranked = analyze(batch.x, ex.analyzer, top[:, rank], seed="one-hot")
        keys = batch.index * 2 + rank
        direct = rp.curves(ex.model, batch.x, ranked.val, top[:, rank], keys=keys)
        np.testing.assert_allclose(curves.values[:BATCH, rank], direct["morf"].numpy(), rtol=1e-5, atol=1e-5)
        random = audit.metric_curves("region_perturbation_random").values[:BATCH, rank]
        np.testing.assert_allclose(random, direct["random"].numpy(), rtol=1e-5, atol=1e-5)
    frame = audit.summaries
    assert len(frame) == 2 * SHARD
    np.testing.assert_array_equal(
        frame["region_perturbation_aopc_morf"].to_numpy(), aopc(curves.values.reshape(2 * SHARD, 5))
    )


def test_more_steps_than_regions_is_a_config_error_naming_the_field(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"metrics.region_perturbation.steps: steps=20 exceeds the 16 regions"):
        explainer(tmp_path, metrics={"region_perturbation": {"patch_size": 2, "steps": 20}})
    with pytest.raises(ConfigError, match=r"metrics.pixel_flipping.steps: steps=65 exceeds the 64 regions"):
        explainer(tmp_path, metrics={"pixel_flipping": {"steps": 65}})
    assert not (tmp_path / "audit").exists()  # refused before the store is created


_WORKER = """
import json, sys
from lrp_tasks.config import parse_config
from lrp_tasks.audit.explainer import ShardExplainer
from lrp_tasks.audit.prepare import open_shard_explainer, resolve_audit
cfg = json.loads(sys.argv[1])
ex = open_shard_explainer(parse_config(cfg), device="cpu")
for shard_id, start, stop in ex.store.pending_shards():
    ex.explain_shard(shard_id, start, stop)
"""


def _content(path: Path) -> dict[str, Any]:
    audit = open_audit(str(path))
    frame = audit.summaries.drop(columns=["explained_at", "audit_id"])
    return {
        "summaries": frame,
        "curves": {name: audit.metric_curves(name).values for name in audit.metric_names},
        "relevance": audit.relevance.values,
    }


@pytest.mark.integration
def test_a_shard_killed_after_its_zarr_write_is_redone_and_its_metrics_counted_once(tmp_path) -> None:
    small = {"shard_size": 16, "batch_size": 16}
    reference = settings(tmp_path / "reference", **small)
    killed = settings(tmp_path / "killed", **small)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = [sys.executable, "-c", _WORKER]
    done = subprocess.run([*run, json.dumps(reference)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    die = {**env, "LRP_AUDIT_TEST_KILL_AT": "after_zarr", "LRP_AUDIT_TEST_KILL_SHARD": "3"}
    first = subprocess.run([*run, json.dumps(killed)], cwd=ROOT, env=die, capture_output=True, text=True)
    assert first.returncode == 137, first.stderr[-3000:]
    out = tmp_path / "killed" / "audit"
    assert open_audit(str(out)).committed_shards == {0, 1, 2}
    assert open_audit(str(out)).summaries["sample_index"].max() == 47  # shard 3's rows do not count

    resumed = subprocess.run([*run, json.dumps(killed)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    mine, ref = _content(out), _content(tmp_path / "reference" / "audit")
    assert mine["summaries"]["sample_index"].tolist() == list(range(360))  # every sample exactly once
    pd.testing.assert_frame_equal(mine["summaries"], ref["summaries"])
    assert mine["curves"].keys() == ref["curves"].keys() and len(mine["curves"]) == 5
    for name, curves in ref["curves"].items():
        np.testing.assert_array_equal(mine["curves"][name], curves)
    np.testing.assert_array_equal(mine["relevance"], ref["relevance"])


def test_parts_written_before_the_metric_columns_read_back_as_nan(tmp_path) -> None:
    import pyarrow.parquet as pq

    ex = explainer(tmp_path, metrics={})
    ex.explain_shard(0, 0, SHARD)
    part = Path(ex.store.layout.part_path(0))
    old = pq.read_table(part).drop_columns(list(METRIC_COLUMNS))  # a part of an audit from before metrics
    pq.write_table(old, part)
    frame = open_audit(str(tmp_path / "audit")).summaries
    assert len(frame) == SHARD and all(frame[c].isna().all() and frame[c].dtype == np.float64 for c in METRIC_COLUMNS)
