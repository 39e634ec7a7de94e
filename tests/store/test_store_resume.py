"""Resume semantics: refusing other configs, killed writers, concurrent writers, idempotent re-runs."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from lrp_tasks.store import AuditStore, AuditStoreError, ConfigMismatchError, lock_store, open_audit

from .store_helpers import make_shard, make_spec, shard_arrays, snapshot, start_worker, write_all

WORKER_TIMEOUT = 120


def run_worker(args: dict, env: dict[str, str] | None = None) -> int:
    proc = start_worker(args, env)
    _out, err = proc.communicate(timeout=WORKER_TIMEOUT)
    if proc.returncode not in (0, 137):
        raise AssertionError(f"worker failed ({proc.returncode}): {err.decode()}")
    return proc.returncode


def zarr_array(path, name: str) -> np.ndarray:
    import zarr

    return zarr.open_group(str(path / "relevance.zarr"), mode="r")[name][...]


def test_config_digest_mismatch_is_refused(tmp_path) -> None:
    store = AuditStore.create_or_open(tmp_path, make_spec())
    write_all(store, only={0})
    before = snapshot(tmp_path)
    other = make_spec(config={"model": "tiny", "composite": "alpha_beta", "batch_size": 4})
    with pytest.raises(ConfigMismatchError, match="config digest mismatch") as e:
        AuditStore.create_or_open(tmp_path, other, mode="resume")
    msg = str(e.value)
    assert str(tmp_path) in msg and store.spec.digest in msg and other.digest in msg
    assert "differing config keys: ['composite']" in msg
    assert "never mixes two configs" in msg and "mode='overwrite'" in msg
    assert snapshot(tmp_path) == before


def test_other_weights_or_layout_are_refused(tmp_path) -> None:
    AuditStore.create_or_open(tmp_path, make_spec())
    with pytest.raises(ConfigMismatchError, match="weights digest mismatch"):
        AuditStore.create_or_open(tmp_path, make_spec(weights_digest="sha256:other"))
    with pytest.raises(ConfigMismatchError, match="shard_size: stored 4, given 2"):
        AuditStore.create_or_open(tmp_path, make_spec(shard_size=2))
    with pytest.raises(ConfigMismatchError, match="dtype: stored 'float32', given 'float16'"):
        AuditStore.create_or_open(tmp_path, make_spec(dtype="float16"))
    with pytest.raises(AuditStoreError, match="already exists"):
        AuditStore.create_or_open(tmp_path, make_spec(), mode="create")


def test_overwrite_wipes_the_store_but_not_other_files(tmp_path) -> None:
    store = AuditStore.create_or_open(tmp_path, make_spec())
    write_all(store)
    (tmp_path / "notes.txt").write_text("keep me")
    other = make_spec(config={"model": "other"}, dtype="float16")
    store2 = AuditStore.create_or_open(tmp_path, other, mode="overwrite")
    assert store2.committed_shards() == set()
    assert open_audit(str(tmp_path)).config == {"model": "other"}
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert zarr_array(tmp_path, "relevance").dtype == np.float16


def test_audit_id_is_adopted_on_resume(tmp_path) -> None:
    first = AuditStore.create_or_open(tmp_path, make_spec(audit_id=None))
    again = AuditStore.create_or_open(tmp_path, make_spec(audit_id=None))
    assert again.audit_id == first.audit_id
    assert first.audit_id.startswith(first.spec.digest[:12])
    with pytest.raises(ConfigMismatchError, match="audit_id"):
        AuditStore.create_or_open(tmp_path, make_spec(audit_id="another"))


def test_rerunning_a_finished_audit_changes_nothing(tmp_path) -> None:
    store = AuditStore.create_or_open(tmp_path, make_spec())
    write_all(store)
    before = snapshot(tmp_path)
    parts = sorted(p.name for p in (tmp_path / "summaries").iterdir())
    assert parts == ["part-000000.parquet", "part-000001.parquet", "part-000002.parquet"]

    again = AuditStore.create_or_open(tmp_path, make_spec(), mode="resume")
    assert again.pending_shards() == []
    write_all(again, seed=5)  # even different data: committed shards are skipped
    assert snapshot(tmp_path) == before  # byte-identical, same mtimes, no new files


@pytest.mark.integration
def test_shard_killed_between_zarr_and_commit_is_redone(tmp_path) -> None:
    args = {"path": str(tmp_path), "shards": [0, 1, 2], "seed": 0}
    env = {"LRP_AUDIT_TEST_KILL_AT": "after_zarr", "LRP_AUDIT_TEST_KILL_SHARD": "1"}
    assert run_worker(args, env) == 137

    # The killed shard's part was fsynced in staging/ and never renamed into summaries/.
    staged = sorted(p.name for p in (tmp_path / "staging").iterdir())
    assert len(staged) == 1 and staged[0].startswith(".part-000001.parquet.")
    assert sorted(p.name for p in (tmp_path / "summaries").iterdir()) == ["part-000000.parquet"]
    assert sorted(p.name for p in (tmp_path / "manifest").iterdir()) == ["shard-000000.json"]
    assert pd.read_parquet(str(tmp_path / "summaries"))["shard_id"].unique().tolist() == [0]
    killed = shard_arrays(make_spec(), 4, 8, seed=0)["relevance"]
    np.testing.assert_array_equal(zarr_array(tmp_path, "relevance")[4:8], killed)  # chunks were written...
    assert open_audit(str(tmp_path)).committed_shards == {0}  # ...but do not count

    store = AuditStore.create_or_open(tmp_path, make_spec())  # takes the dead writer's lock over
    assert store.committed_shards() == {0}  # shard 0 finished before the kill; 1 died, 2 never ran
    assert list((tmp_path / "staging").iterdir()) == []  # the dead writer's temporaries are gone
    assert [sid for sid, _, _ in store.pending_shards()] == [1, 2]
    write_all(store, seed=3, only={1, 2})  # the resumed run (new data, to see it replace the chunks)
    assert store.committed_shards() == {0, 1, 2}
    assert list((tmp_path / "staging").iterdir()) == []
    rel = zarr_array(tmp_path, "relevance")
    np.testing.assert_array_equal(rel[0:4], shard_arrays(store.spec, 0, 4, seed=0)["relevance"])
    np.testing.assert_array_equal(rel[4:10], shard_arrays(store.spec, 4, 10, seed=3)["relevance"])
    df = open_audit(str(tmp_path)).summaries
    assert df["sample_index"].tolist() == list(range(10))
    assert df["shard_id"].tolist() == [0] * 4 + [1] * 4 + [2] * 2


@pytest.mark.integration
def test_shard_killed_after_publishing_its_part_gets_its_record(tmp_path) -> None:
    args = {"path": str(tmp_path), "shards": [2], "seed": 0}
    assert run_worker(args, {"LRP_AUDIT_TEST_KILL_AT": "after_parquet"}) == 137
    assert (tmp_path / "summaries" / "part-000002.parquet").exists()
    assert not (tmp_path / "manifest" / "shard-000002.json").exists()

    store = AuditStore.create_or_open(tmp_path, make_spec())  # rebuilds the missing record
    record = json.loads((tmp_path / "manifest" / "shard-000002.json").read_text())
    assert record["recovered"] is True
    assert (record["start"], record["stop"], record["rows"]) == (8, 10, 2)
    assert store.committed_shards() == {2}
    assert store.write_shard(make_shard(store.spec, 2, 8, 10)) is False


@pytest.mark.integration
def test_two_workers_of_one_run_on_disjoint_shards_at_once(tmp_path) -> None:
    # 20 samples, shards of 2 in chunks of 1: two worker processes of one run (holding its lease)
    # interleave on neighbouring chunks.
    spec = {"n_samples": 20, "shard_size": 2, "chunk_size": 1}
    go = tmp_path / "go"
    audit = tmp_path / "audit"
    run = lock_store(audit)
    AuditStore.create_or_open(audit, make_spec(**spec)).close()
    procs = [
        start_worker(
            {
                "path": str(audit),
                "spec": spec,
                "shards": list(range(w, 10, 2)),
                "go_file": str(go),
                "lease": run.token,
            }
        )
        for w in (0, 1)
    ]
    go.write_text("")
    for proc in procs:
        _out, err = proc.communicate(timeout=WORKER_TIMEOUT)
        assert proc.returncode == 0, err.decode()
    run.release()

    full = make_spec(**spec)
    expected = shard_arrays(full, 0, 20)
    np.testing.assert_array_equal(zarr_array(audit, "relevance"), expected["relevance"])
    np.testing.assert_array_equal(zarr_array(audit, "logits"), expected["logits"])
    np.testing.assert_array_equal(zarr_array(audit, "target"), expected["target"])
    result = open_audit(str(audit))
    assert result.committed_shards == set(range(10))
    assert result.summaries["sample_index"].tolist() == list(range(20))
    assert len(result.records) == 10
    writers = {rec["writer"]["pid"] for rec in result.records.values()}
    assert len(writers) == 2
    leftovers = [n for n in os.listdir(audit) if n.startswith(".")]
    assert leftovers == []
