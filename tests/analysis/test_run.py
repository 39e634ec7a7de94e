"""SpRAy over a (synthetic) audit store: results, resume, config changes, bad requests."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from lrp_tasks.analysis import (
    NoCommittedShardsError,
    SprayConfigMismatchError,
    SprayRequestError,
    SpraySpec,
    SprayStoreError,
    plan_spray,
    read_spray,
    run_spray,
    spray_dir,
)
from lrp_tasks.analysis.results import CRASH_HOOK
from lrp_tasks.store import open_audit
from tests.analysis.spray_helpers import is_corner, write_audit

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAST = {"layout": "none", "k_max": 4}


@pytest.fixture(scope="module")
def audit(tmp_path_factory):
    path = tmp_path_factory.mktemp("spray") / "audit"
    write_audit(path)
    return path


def fresh_copy(audit, tmp_path):
    import shutil

    target = tmp_path / "audit"
    shutil.copytree(audit, target)
    shutil.rmtree(target / "analysis", ignore_errors=True)
    return target


def test_each_class_splits_into_its_two_strategies_and_the_minority_ranks_first(audit, tmp_path):
    path = fresh_copy(audit, tmp_path)
    out = run_spray(str(path), SpraySpec(**FAST))
    assert sorted(o["class"] for o in out["classes_run"]) == [0, 1, 2]
    spray = read_spray(path)
    for cls in range(3):
        rows = spray.samples[spray.samples["class"] == cls]
        assert (rows["k"] == 2).all() and (rows["eigengap_k"] == 2).all()
        corner = is_corner(rows["sample_index"].to_numpy())
        top = rows["cluster_rank"] == 1
        assert (top.to_numpy() == corner).all()  # the corner quarter is exactly the first-ranked cluster
    # one table per kind, readable with pandas alone and joinable to the summaries on sample_index
    samples = pd.read_parquet(path / "analysis" / "spray" / "samples")
    assert len(samples) == 240 and samples["sample_index"].is_unique
    assert {"cluster", "cluster_rank", "k", "eigengap_k", "x", "y", "distance_to_centre", "cluster_k2"} <= set(samples)
    joined = samples.merge(open_audit(path).summaries, on="sample_index")
    assert (joined["class"] == joined["predicted"]).all()
    eig = spray.eigenvalues[spray.eigenvalues["class"] == 0]["eigenvalue"].to_numpy()
    assert len(eig) == 32 and np.all(np.diff(eig) >= -1e-12) and eig[1] < 1e-8 < eig[2]
    maps = spray.mean_maps(0)
    assert maps.shape == (2, 16, 16)
    chosen = spray.clusters[(spray.clusters["class"] == 0) & spray.clusters["chosen"]]
    top_cluster = int(chosen.loc[chosen["rank"] == 1, "cluster"].iloc[0])
    assert maps[top_cluster][1:4, 1:4].sum() > 0.9 * maps[top_cluster].sum()


def test_by_label_groups_by_the_labels(audit, tmp_path):
    path = fresh_copy(audit, tmp_path)
    run_spray(str(path), SpraySpec(by="label", classes=[1], **FAST))
    rows = read_spray(path).samples
    assert set(rows["class"]) == {1}
    assert ((rows["sample_index"] + 1) % 3 == 1).all()


def test_a_fixed_k_and_the_k_range_are_stored(audit, tmp_path):
    path = fresh_copy(audit, tmp_path)
    run_spray(str(path), SpraySpec(classes=[0], k=3, k_min=2, k_max=4, layout="none"))
    spray = read_spray(path)
    rows = spray.samples
    assert (rows["k"] == 3).all() and (rows["eigengap_k"] == 2).all()
    assert rows["cluster"].nunique() == 3
    assert [c for c in rows if c.startswith("cluster_k")] == ["cluster_k2", "cluster_k3", "cluster_k4"]
    assert sorted(spray.clusters["k"].unique()) == [2, 3, 4]


def test_a_finished_class_is_not_redone_and_classes_can_be_added(audit, tmp_path):
    path = fresh_copy(audit, tmp_path)
    run_spray(str(path), SpraySpec(classes=[0], **FAST))
    part = spray_dir(path) / "samples" / "class-000000.parquet"
    before = part.stat().st_mtime_ns
    again = run_spray(str(path), SpraySpec(**FAST))  # all classes now: 0 is skipped, 1 and 2 run
    assert again["classes_skipped"] == [0]
    assert sorted(o["class"] for o in again["classes_run"]) == [1, 2]
    assert part.stat().st_mtime_ns == before


def test_a_changed_config_is_refused_or_recomputed_for_the_requested_classes_only(audit, tmp_path):
    path = fresh_copy(audit, tmp_path)
    run_spray(str(path), SpraySpec(classes=[0, 1], **FAST))
    with pytest.raises(SprayConfigMismatchError, match="n_neighbors: 10 -> 5"):
        run_spray(str(path), SpraySpec(classes=[2], n_neighbors=5, **FAST))
    assert sorted(read_spray(path).classes) == [0, 1]  # refused: nothing touched
    before = (spray_dir(path) / "samples" / "class-000000.parquet").read_bytes()
    redo = run_spray(str(path), SpraySpec(classes=[1], n_neighbors=5, **FAST), on_change="recompute")
    assert [o["class"] for o in redo["classes_run"]] == [1]
    assert any("kept the results of classes [0]" in note for note in redo["notes"])
    spray = read_spray(path)
    assert spray.classes == [0, 1]  # class 0 kept, with its own config; class 1 recomputed
    assert (spray_dir(path) / "samples" / "class-000000.parquet").read_bytes() == before
    assert spray.config_of(0)["n_neighbors"] == 10 and spray.config_of(1)["n_neighbors"] == 5
    with pytest.raises(SprayStoreError, match="2 SpRAy configs"):
        _ = spray.config  # never silently one config for mixed results
    again = run_spray(str(path), SpraySpec(classes=[1], n_neighbors=5, **FAST), on_change="recompute")
    assert again["classes_skipped"] == [1]
    run_spray(str(path), SpraySpec(n_neighbors=5, **FAST), on_change="recompute")  # every class: wiped
    spray = read_spray(path)
    assert spray.classes == [0, 1, 2] and spray.config["n_neighbors"] == 5


def test_replacing_every_class_deletes_only_what_spray_wrote(audit, tmp_path):
    """``recompute`` of every class under a new config wipes the old results through the store's
    one deletion function: a user's files stay, and a symlink is neither followed nor removed."""
    path = fresh_copy(audit, tmp_path)
    run_spray(str(path), SpraySpec(classes=[0], **FAST))
    root = spray_dir(path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    (root / "NOTES.txt").write_text("mine")
    (root / "samples" / "mine.parquet").write_text("mine")
    (root / "arrays" / "link").symlink_to(outside, target_is_directory=True)
    (root / "clusters" / "class-000000.parquet").unlink()
    (root / "clusters" / "class-000000.parquet").symlink_to(outside / "precious.txt")
    run_spray(str(path), SpraySpec(n_neighbors=5, **FAST), on_change="recompute")
    assert read_spray(path).classes == [0, 1, 2] and read_spray(path).config["n_neighbors"] == 5
    assert (root / "NOTES.txt").read_text() == "mine"
    assert (root / "samples" / "mine.parquet").read_text() == "mine"
    assert (root / "arrays" / "link").is_symlink() and (outside / "precious.txt").read_text() == "keep me"


def test_new_committed_shards_make_older_results_stale(tmp_path):
    path = tmp_path / "audit"
    write_audit(path, shards=[0, 1, 2])
    run_spray(str(path), SpraySpec(classes=[0], **FAST))
    write_audit(path)  # the audit resumed: every shard committed now
    with pytest.raises(SprayConfigMismatchError, match="committed shards: 3 -> 6"):
        run_spray(str(path), SpraySpec(classes=[0], **FAST))
    run_spray(str(path), SpraySpec(classes=[0], **FAST), on_change="recompute")
    assert len(read_spray(path).samples) == 80


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"classes": [7]}, r"unknown class\(es\) \[7\]: the model has 3 classes \(0\.\.2\)"),
        ({"k": 90, "n_eigval": 100, "k_max": 10}, r"k=90 clusters is more than the class holds \(class 0: 80 samples"),
    ],
)
def test_bad_requests_are_refused_before_anything_is_written(audit, tmp_path, spec, message):
    path = fresh_copy(audit, tmp_path)
    with pytest.raises(SprayRequestError, match=message):
        plan_spray(str(path), SpraySpec(**{**FAST, **spec}))
    assert not spray_dir(path).exists()


def test_an_audit_without_committed_shards_is_refused(tmp_path):
    path = tmp_path / "audit"
    write_audit(path, shards=[])
    with pytest.raises(NoCommittedShardsError, match="no committed shards"):
        run_spray(str(path), SpraySpec(**FAST))


def test_a_class_with_too_few_samples_is_refused_by_name(tmp_path):
    path = tmp_path / "audit"
    write_audit(path, n_samples=4, shard_size=4)  # classes 0: 2 samples, 1: 1, 2: 1
    with pytest.raises(SprayRequestError, match=r"class 1 has 1 committed sample\(s\) predicted as 1"):
        run_spray(str(path), SpraySpec(classes=[1], **FAST))


def test_a_killed_run_resumes(audit, tmp_path):
    """A real process dies while writing class 1 (after its other files, before its samples part)."""
    path = fresh_copy(audit, tmp_path)
    code = (
        "import sys; from lrp_tasks.analysis import run_spray, SpraySpec; "
        "run_spray(sys.argv[1], SpraySpec(layout='none', k_max=4))"
    )
    env = {**os.environ, CRASH_HOOK: "1", "PYTHONPATH": ROOT}
    proc = subprocess.run([sys.executable, "-c", code, str(path)], env=env, cwd=ROOT, capture_output=True, timeout=300)
    assert proc.returncode == 17, proc.stderr.decode()[-2000:]
    assert read_spray(path).classes == [0]  # class 1's other files exist but it does not count
    assert (spray_dir(path) / "clusters" / "class-000001.parquet").exists()
    out = run_spray(str(path), SpraySpec(**FAST))
    assert out["classes_skipped"] == [0] and sorted(o["class"] for o in out["classes_run"]) == [1, 2]
    assert read_spray(path).classes == [0, 1, 2]
