"""Write shards, read them back: exact float32, bounded float16, layout, reader API, refusals."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from lrp_tasks.store import (
    AuditSpec,
    AuditStore,
    ShardResult,
    ShardValidationError,
    open_audit,
    plan_shards,
)

from .store_helpers import make_shard, make_spec, shard_arrays, snapshot, write_all

# float16 round-to-nearest: relative error <= 2^-11 for normal numbers (|x| >= 2^-14); below that the
# spacing is 2^-24, so the absolute error is <= 2^-25 (values under 2^-25 flush to zero).
F16_REL = 2.0**-11
F16_ABS = 2.0**-25


def zarr_array(path, name: str) -> np.ndarray:
    import zarr

    return zarr.open_group(str(path / "relevance.zarr"), mode="r")[name][...]


def test_plan_is_deterministic_and_covers_every_sample() -> None:
    plan = plan_shards(10, 4)
    assert plan == [(0, 0, 4), (1, 4, 8), (2, 8, 10)]
    assert plan == plan_shards(10, 4)
    with pytest.raises(ValueError, match="shard_size"):
        plan_shards(10, 0)


def test_chunk_size_must_divide_shard_size() -> None:
    with pytest.raises(ValueError, match="must divide shard_size"):
        make_spec(chunk_size=3)
    assert make_spec(chunk_size=None).resolved_chunk_size == 4  # whole shard fits the chunk budget
    big = AuditSpec(n_samples=100, sample_shape=(3, 224, 224), n_classes=10, shard_size=64)
    assert 64 % big.resolved_chunk_size == 0
    assert big.resolved_chunk_size * 3 * 224 * 224 * 4 <= 8 * 1024 * 1024


def test_float32_round_trip_is_exact(tmp_path) -> None:
    spec = make_spec(keep_input=True, n_concepts=2, concept_ids=(7, 3))
    store = AuditStore.create_or_open(tmp_path, spec)
    written = [make_shard(store.spec, sid, a, b) for sid, a, b in store.plan]
    for shard in written:
        assert store.write_shard(shard) is True
    assert store.committed_shards() == {0, 1, 2}

    for name in ("relevance", "logits", "target", "input", "concepts"):
        expected = np.concatenate([getattr(s, name) for s in written])
        got = zarr_array(tmp_path, name)
        assert got.dtype == (np.int64 if name == "target" else np.float32), name
        np.testing.assert_array_equal(got, expected, err_msg=name)
    np.testing.assert_array_equal(zarr_array(tmp_path, "concept_ids"), [7, 3])

    audit = open_audit(str(tmp_path))
    frames = pd.concat([s.summaries for s in written], ignore_index=True)
    pd.testing.assert_frame_equal(audit.summaries, frames)
    assert audit.committed_shards == {0, 1, 2}
    assert audit.config == spec.config
    assert audit.attrs["config_digest"] == spec.digest
    assert audit.attrs["weights_digest"] == "sha256:weights"
    assert audit.attrs["composite"] == "EpsilonPlus(epsilon=1e-6)"
    assert set(audit.attrs["versions"]) >= {
        "torch",
        "zarr",
        "numpy",
        "pandas",
        "pyarrow",
        "python",
        "lrp-audit",
    }
    assert audit.attrs["created_at"].endswith("+00:00")


def test_float16_error_is_bounded(tmp_path) -> None:
    spec = make_spec(dtype="float16", n_samples=4, shard_size=4, chunk_size=4)
    store = AuditStore.create_or_open(tmp_path, spec)
    rng = np.random.default_rng(1)
    # Magnitudes from 1e-9 (flushed / subnormal) to 6e4 (near the float16 max), both signs.
    rel = (rng.choice([-1, 1], (4, 3, 4, 4)) * 10.0 ** rng.uniform(-9, 4.7, (4, 3, 4, 4))).astype(np.float32)
    shard = make_shard(store.spec, 0, 0, 4)
    shard.relevance = rel
    assert store.write_shard(shard)
    got = zarr_array(tmp_path, "relevance")
    assert got.dtype == np.float16
    err = np.abs(got.astype(np.float64) - rel.astype(np.float64))
    bound = np.maximum(F16_REL * np.abs(rel.astype(np.float64)), F16_ABS)
    assert (err <= bound).all(), float((err / bound).max())


def test_float16_overflow_is_refused(tmp_path) -> None:
    store = AuditStore.create_or_open(tmp_path, make_spec(dtype="float16"))
    shard = make_shard(store.spec, 0, 0, 4)
    shard.relevance[1, 0, 0, 0] = -65520.0  # rounds to -inf in float16
    with pytest.raises(ShardValidationError, match=r"shard 0 .*relevance exceeds the float16 range"):
        store.write_shard(shard)
    assert store.committed_shards() == set()
    shard.relevance[1, 0, 0, 0] = -65519.0  # rounds to -65504: fine
    assert store.write_shard(shard)
    assert zarr_array(tmp_path, "relevance")[1, 0, 0, 0] == -65504.0


def test_top_k_explanations_layout(tmp_path) -> None:
    spec = make_spec(explanations_per_sample=3)
    store = AuditStore.create_or_open(tmp_path, spec)
    write_all(store)
    audit = open_audit(str(tmp_path))
    assert audit.relevance.dims == ("sample", "explanation", "channel", "height", "width")
    assert audit.relevance.shape == (10, 3, 3, 4, 4)
    assert zarr_array(tmp_path, "target").shape == (10, 3)
    df = audit.summaries
    assert len(df) == 30
    assert df["target_rank"].tolist() == [0, 1, 2] * 10
    expected = shard_arrays(store.spec, 0, 10)
    np.testing.assert_array_equal(df["target"].to_numpy().reshape(10, 3), expected["target"])
    np.testing.assert_allclose(audit.heatmap(5, rank=2), expected["relevance"][5, 2].sum(axis=0), rtol=1e-6)


def test_reader_sees_committed_shards_only(tmp_path) -> None:
    store = AuditStore.create_or_open(tmp_path, make_spec())
    write_all(store, only={0, 2})
    audit = open_audit(str(tmp_path))
    assert audit.committed_shards == {0, 2}
    np.testing.assert_array_equal(audit.committed_samples, [0, 1, 2, 3, 8, 9])
    assert audit.summaries["sample_index"].tolist() == [0, 1, 2, 3, 8, 9]

    direct = pd.read_parquet(str(tmp_path / "summaries"))
    assert sorted(direct["sample_index"].tolist()) == [0, 1, 2, 3, 8, 9]

    rel = audit.relevance
    assert rel.dims == ("sample", "channel", "height", "width")
    assert rel["sample"].values.tolist() == [0, 1, 2, 3, 8, 9]
    assert not rel.variable._in_memory  # lazily backed by zarr until .values
    expected = np.concatenate(
        [shard_arrays(store.spec, 0, 4)["relevance"], shard_arrays(store.spec, 8, 10)["relevance"]]
    )
    np.testing.assert_array_equal(rel.values, expected)
    np.testing.assert_array_equal(rel.sel(sample=9).values, expected[-1])

    hm = audit.heatmap(9)
    assert hm.shape == (4, 4)
    np.testing.assert_allclose(hm, expected[-1].sum(axis=0), rtol=1e-6)
    with pytest.raises(KeyError, match="shard 1, which is not committed"):
        audit.heatmap(5)


def test_write_shard_is_idempotent(tmp_path) -> None:
    store = AuditStore.create_or_open(tmp_path, make_spec())
    shard = make_shard(store.spec, 1, 4, 8)
    assert store.write_shard(shard) is True
    before = snapshot(tmp_path)
    assert store.write_shard(shard) is False
    assert store.write_shard(make_shard(store.spec, 1, 4, 8, seed=9)) is False  # committed stays committed
    assert snapshot(tmp_path) == before


def _bad(shard: ShardResult, **changes) -> ShardResult:
    for k, v in changes.items():
        setattr(shard, k, v)
    return shard


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: _bad(s, relevance=s.relevance[:, :2]), r"shard 1 \(samples 4:8\): relevance has shape"),
        (lambda s: _bad(s, logits=s.logits[:, :3]), r"shard 1 .*logits has shape"),
        (lambda s: _bad(s, target=s.target + 10), r"shard 1 .*target values"),
        (lambda s: _bad(s, start=5), r"shard 1 covers samples 4:8 in the plan, got 5:8"),
        (lambda s: _bad(s, shard_id=7), r"shard 7 is not in the plan"),
        (lambda s: _bad(s, summaries=s.summaries.drop(columns=["logit"])), r"shard 1 .*missing \['logit'\]"),
        (lambda s: _bad(s, summaries=s.summaries.iloc[:2]), r"shard 1 .*summaries have 2 rows, expected 4"),
        (lambda s: _bad(s, summaries=s.summaries.assign(audit_id="other")), r"audit_id \['other'\]"),
        (
            lambda s: _bad(s, input=s.relevance),
            r"input given but the audit was created with keep_input=False",
        ),
    ],
)
def test_bad_shard_is_refused_and_nothing_is_lost(tmp_path, change, message) -> None:
    store = AuditStore.create_or_open(tmp_path, make_spec())
    write_all(store, only={0})
    before = snapshot(tmp_path)
    with pytest.raises(ShardValidationError, match=message):
        store.write_shard(change(make_shard(store.spec, 1, 4, 8)))
    assert snapshot(tmp_path) == before
    assert store.committed_shards() == {0}


def test_nan_relevance_is_refused_naming_shard_and_sample(tmp_path) -> None:
    store = AuditStore.create_or_open(tmp_path, make_spec())
    shard = make_shard(store.spec, 1, 4, 8)
    shard.relevance[2, 0, 1, 1] = np.nan
    shard.relevance[3, 1, 0, 0] = np.inf
    with pytest.raises(ShardValidationError, match=re.escape("shard 1 (samples 4:8): relevance has 2 NaN/inf")) as e:
        store.write_shard(shard)
    assert "[6, 7]" in str(e.value)
    assert store.committed_shards() == set()
    assert not list((tmp_path / "summaries").iterdir())
