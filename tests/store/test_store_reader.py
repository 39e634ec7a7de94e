"""Read API details: URLs, empty audits, CRP concepts, provenance records."""

from __future__ import annotations

import hashlib
import uuid

import fsspec
import numpy as np
import pytest

from lrp_tasks.store import AuditStore, AuditStoreError, NotAnAuditError, open_audit

from .store_helpers import make_shard, make_spec, shard_arrays, write_all


def test_empty_audit_reads_as_empty(tmp_path) -> None:
    AuditStore.create_or_open(tmp_path, make_spec())
    audit = open_audit(str(tmp_path))
    assert audit.committed_shards == set()
    assert len(audit.summaries) == 0
    assert audit.summaries.columns[0] == "sample_index"
    assert audit.relevance.shape == (0, 3, 4, 4)
    with pytest.raises(KeyError, match="not committed"):
        audit.heatmap(0)


def test_not_an_audit(tmp_path) -> None:
    with pytest.raises(NotAnAuditError, match="no audit at"):
        open_audit(str(tmp_path))


def test_writer_needs_a_local_path() -> None:
    with pytest.raises(AuditStoreError, match="needs a local path"):
        AuditStore.create_or_open("s3://bucket/audit", make_spec())


def test_file_and_fsspec_urls_are_readable(tmp_path) -> None:
    store = AuditStore.create_or_open(tmp_path, make_spec())
    write_all(store, only={0, 2})
    by_url = open_audit(f"file://{tmp_path}")
    assert by_url.summaries["sample_index"].tolist() == [0, 1, 2, 3, 8, 9]

    fs = fsspec.filesystem("memory")
    remote = f"/audit-{uuid.uuid4().hex}"
    fs.put(str(tmp_path), remote, recursive=True)
    try:
        audit = open_audit(f"memory://{remote}")
        assert audit.committed_shards == {0, 2}
        assert audit.summaries["sample_index"].tolist() == [0, 1, 2, 3, 8, 9]
        np.testing.assert_array_equal(audit.heatmap(8), shard_arrays(store.spec, 8, 9)["relevance"][0].sum(axis=0))
        assert set(audit.records) == {0, 2}
    finally:
        fs.rm(remote, recursive=True)


def test_concepts_and_inputs_in_the_dataset(tmp_path) -> None:
    spec = make_spec(keep_input=True, n_concepts=3, concept_ids=(11, 12, 40), dtype="float16")
    store = AuditStore.create_or_open(tmp_path, spec)
    write_all(store)
    ds = open_audit(str(tmp_path)).dataset
    assert ds["concepts"].dims == ("sample", "concept", "channel", "height", "width")
    assert ds["concepts"].dtype == np.float16
    assert ds["input"].dtype == np.float32
    assert ds["concept_ids"].values.tolist() == [11, 12, 40]
    assert ds["logits"].dims == ("sample", "class")
    expected = shard_arrays(store.spec, 0, 10)
    np.testing.assert_array_equal(ds["input"].values, expected["input"])  # inputs keep their dtype
    np.testing.assert_allclose(ds["concepts"].values, expected["concepts"], rtol=2**-11, atol=2**-25)


def test_missing_concepts_are_refused(tmp_path) -> None:
    store = AuditStore.create_or_open(tmp_path, make_spec(n_concepts=2))
    shard = make_shard(store.spec, 0, 0, 4)
    shard.concepts = None
    with pytest.raises(AuditStoreError, match="keeps 2 concepts but concepts is None"):
        store.write_shard(shard)


def test_commit_records_describe_the_shard(tmp_path) -> None:
    store = AuditStore.create_or_open(tmp_path, make_spec())
    write_all(store, only={1})
    record = open_audit(str(tmp_path)).records[1]
    assert (record["start"], record["stop"], record["rows"]) == (4, 8, 4)
    assert record["parquet"]["file"] == "part-000001.parquet"
    assert record["zarr_chunks"]["relevance"] == ["relevance/c.2.0.0.0", "relevance/c.3.0.0.0"]
    assert record["config_digest"] == store.config_digest and record["recovered"] is False
    data = (tmp_path / "summaries" / "part-000001.parquet").read_bytes()
    assert hashlib.sha256(data).hexdigest() == record["parquet"]["sha256"]
