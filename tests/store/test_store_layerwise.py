"""Layerwise relevances, CRP concept channels/relevances, the direct chunk writer, Table summaries."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import zarr

from lrp_tasks.audit.summaries import summarize, summary_table
from lrp_tasks.store import AuditStore, ConfigMismatchError, ShardValidationError, open_audit
from lrp_tasks.store.relevance import RelevanceArrays, array_plan

from .store_helpers import make_shard, make_spec, shard_arrays, write_all

LAYERS = {"features.conv": (4, 2, 2), "fc": (6,)}


def test_layerwise_round_trip_with_named_dimensions(tmp_path) -> None:
    spec = make_spec(layerwise=LAYERS, dtype="float16")
    store = AuditStore.create_or_open(tmp_path, spec)
    write_all(store, only={0, 2})
    audit = open_audit(str(tmp_path))
    assert audit.layerwise_names == ["features.conv", "fc"]
    assert audit.layout_info["layerwise"] == {"features.conv": [4, 2, 2], "fc": [6]}

    conv = audit.layerwise("features.conv")
    assert conv.dims == ("sample", "channel", "height", "width")
    assert conv.dtype == np.float16
    assert conv["sample"].values.tolist() == [0, 1, 2, 3, 8, 9]  # committed shards only
    expected = np.concatenate(
        [shard_arrays(spec, 0, 4)["layerwise/features.conv"], shard_arrays(spec, 8, 10)["layerwise/features.conv"]]
    )
    np.testing.assert_allclose(conv.values, expected, rtol=2**-11, atol=2**-25)
    fc = audit.layerwise("fc")
    assert fc.dims == ("sample", "feature") and fc.shape == (6, 6)
    assert "layerwise" not in audit.dataset  # a subgroup: the root Dataset is unchanged
    with pytest.raises(KeyError, match=r"no layerwise relevance for 'conv9'; it keeps \['features.conv', 'fc'\]"):
        audit.layerwise("conv9")


def test_layerwise_with_top_k_has_an_explanation_axis(tmp_path) -> None:
    spec = make_spec(layerwise={"fc": (6,)}, explanations_per_sample=2)
    store = AuditStore.create_or_open(tmp_path, spec)
    write_all(store)
    fc = open_audit(str(tmp_path)).layerwise("fc")
    assert fc.dims == ("sample", "explanation", "feature") and fc.shape == (10, 2, 6)
    np.testing.assert_array_equal(fc.values, shard_arrays(spec, 0, 10)["layerwise/fc"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.layerwise.pop("fc"), r"missing \['fc'\]"),
        (lambda s: s.layerwise.update(other=np.zeros((4, 6))), r"not in the audit \['other'\]"),
        (lambda s: s.layerwise.update(fc=np.zeros((4, 5))), r"layerwise\['fc'\] has shape \(4, 5\), expected \(4, 6\)"),
        (
            lambda s: s.layerwise["fc"].__setitem__((2, 1), np.nan),
            r"layerwise\['fc'\] has 1 NaN/inf values, in samples \[2\]",
        ),
    ],
)
def test_bad_layerwise_relevances_are_refused_before_writing(tmp_path, change, message) -> None:
    store = AuditStore.create_or_open(tmp_path, make_spec(layerwise=LAYERS))
    shard = make_shard(store.spec, 0, 0, 4)
    shard.layerwise = dict(shard.layerwise)
    change(shard)
    with pytest.raises(ShardValidationError, match=message):
        store.write_shard(shard)
    assert store.committed_shards() == set()


def test_layerwise_spec_is_part_of_the_layout(tmp_path) -> None:
    AuditStore.create_or_open(tmp_path, make_spec(layerwise={"fc": (6,)}))
    with pytest.raises(ConfigMismatchError, match="layerwise: stored"):
        AuditStore.create_or_open(tmp_path, make_spec(layerwise={"fc": (7,)}))
    with pytest.raises(ConfigMismatchError, match="layerwise: stored"):
        AuditStore.create_or_open(tmp_path, make_spec())
    with pytest.raises(ValueError, match="cannot name a Zarr array"):
        make_spec(layerwise={"a/b": (3,)})
    with pytest.raises(ValueError, match="shape must be non-empty positive"):
        make_spec(layerwise={"fc": (0,)})


def test_layout_without_new_arrays_is_unchanged() -> None:
    """Audits written before layerwise/concept arrays existed must still resume: same layout keys."""
    assert set(make_spec().layout_dict()) == {
        "n_samples",
        "sample_shape",
        "n_classes",
        "explanations_per_sample",
        "shard_size",
        "chunk_size",
        "dtype",
        "keep_input",
        "input_dtype",
        "n_concepts",
        "concept_ids",
        "compression",
    }


def test_concept_channels_and_relevances_round_trip(tmp_path) -> None:
    spec = make_spec(n_concepts=3)  # top-n: channels vary per sample
    store = AuditStore.create_or_open(tmp_path, spec)
    write_all(store)
    audit = open_audit(str(tmp_path))
    expected = shard_arrays(spec, 0, 10)
    assert audit.concept_channels.dims == ("sample", "concept")
    assert audit.concept_channels.dtype == np.int64 and audit.concept_relevance.dtype == np.float32
    np.testing.assert_array_equal(audit.concept_channels.values, expected["concept_channels"])
    np.testing.assert_array_equal(audit.concept_relevance.values, expected["concept_relevance"])
    np.testing.assert_array_equal(audit.concepts.values, expected["concepts"])
    assert audit.dataset["concept_ids"].values.tolist() == [-1, -1, -1]  # no fixed channels
    assert audit.layout_info["concept_arrays"] == ["concept_channels", "concept_relevance"]


def test_concept_arrays_are_checked(tmp_path) -> None:
    store = AuditStore.create_or_open(tmp_path, make_spec(n_concepts=2, concept_ids=(7, 3)))
    good = make_shard(store.spec, 0, 0, 4)
    np.testing.assert_array_equal(good.concept_channels, [[7, 3]] * 4)

    cases = {
        "concept_channels differ from the audit's fixed concept_ids": {
            "concept_channels": good.concept_channels[:, ::-1]
        },
        "concept_channels repeat a channel": {"concept_channels": np.full((4, 2), 7)},
        "concept_channels must be integers": {"concept_channels": good.concept_channels.astype(float)},
        r"concept_relevance has shape \(4, 3\)": {"concept_relevance": np.zeros((4, 3))},
        "keeps 2 concepts but concept_relevance is None": {"concept_relevance": None},
    }
    for message, change in cases.items():
        shard = make_shard(store.spec, 0, 0, 4)
        for key, value in change.items():
            setattr(shard, key, value)
        with pytest.raises(ShardValidationError, match=message):
            store.write_shard(shard)
    plain = AuditStore.create_or_open(tmp_path / "plain", make_spec())
    shard = make_shard(plain.spec, 0, 0, 4)
    shard.concept_channels = good.concept_channels
    with pytest.raises(
        ShardValidationError, match="concept_channels given but the audit was created with n_concepts=0"
    ):
        plain.write_shard(shard)
    with pytest.raises(KeyError, match="no CRP concepts"):
        _ = open_audit(str(tmp_path / "plain")).concept_channels


@pytest.mark.parametrize("compression", ["lz4", "zstd", "none"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_direct_chunk_files_are_what_zarr_writes(tmp_path, compression, dtype) -> None:
    """The store encodes whole chunks itself: the files must be byte-identical to Zarr's own."""
    spec = make_spec(compression=compression, dtype=dtype, keep_input=True, n_concepts=2, layerwise=LAYERS)
    ours = AuditStore.create_or_open(tmp_path / "ours", spec)
    write_all(ours)
    theirs = AuditStore.create_or_open(tmp_path / "theirs", spec)
    arrays = RelevanceArrays(theirs.layout.zarr_path, spec)
    data = {**shard_arrays(spec, 0, 10)}
    data["target"] = data["target"].astype(np.int64)
    for name in array_plan(spec):
        arrays.arrays[name][0:10] = data[name]  # Zarr's generic write path
    for name in array_plan(spec):
        for key in arrays.chunk_keys(name, 0, 10):
            a = (tmp_path / "ours" / "relevance.zarr" / key).read_bytes()
            b = (tmp_path / "theirs" / "relevance.zarr" / key).read_bytes()
            assert a == b, key


def test_short_last_chunk_goes_through_zarr(tmp_path) -> None:
    spec = make_spec(chunk_size=4)  # 10 samples in chunks of 4: rows 8..9 are a padded edge chunk
    store = AuditStore.create_or_open(tmp_path, spec)
    write_all(store)
    rel = zarr.open_group(str(tmp_path / "relevance.zarr"), mode="r")["relevance"][...]
    np.testing.assert_array_equal(rel, shard_arrays(spec, 0, 10)["relevance"])
    assert sorted(os.listdir(tmp_path / "relevance.zarr" / "relevance")) == [
        "c.0.0.0.0",
        "c.1.0.0.0",
        "c.2.0.0.0",
        "zarr.json",
    ]


def test_float64_maps_are_cast_to_the_stored_dtype(tmp_path) -> None:
    store = AuditStore.create_or_open(tmp_path, make_spec(chunk_size=4))
    shards = [make_shard(store.spec, sid, a, b) for sid, a, b in store.plan]
    for shard in shards:
        shard.relevance = shard.relevance.astype(np.float64) / 3
        store.write_shard(shard)
    got = open_audit(str(tmp_path)).relevance.values
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.concatenate([s.relevance for s in shards]).astype(np.float32))


def test_table_and_frame_summaries_write_the_same_part(tmp_path) -> None:
    spec = make_spec()
    parts = {}
    for kind in ("frame", "table"):
        store = AuditStore.create_or_open(tmp_path / kind, spec)
        shard = make_shard(spec, 0, 0, 4)
        a = shard_arrays(spec, 0, 4)
        args = (a["relevance"], a["logits"], a["target"], np.ones(4), None, np.arange(4), None, "tiny", 0, "audit-test")
        when = pd.Timestamp("2026-01-01", tz="UTC").to_pydatetime()
        shard.summaries = (summarize if kind == "frame" else summary_table)(*args, explained_at=when)
        store.write_shard(shard)
        parts[kind] = (tmp_path / kind / "summaries" / "part-000000.parquet").read_bytes()
    assert parts["frame"] == parts["table"]


def test_zero_maps_have_nan_statistics_not_nulls(tmp_path) -> None:
    """A map that is all zeros has undefined entropy and sparsity: NaN values, which the non-nullable
    schema accepts (a pandas conversion would have turned them into refused nulls)."""
    store = AuditStore.create_or_open(tmp_path, make_spec())
    for summaries in (summarize, summary_table):
        shard = make_shard(store.spec, 0, 0, 4)
        shard.relevance = np.zeros_like(shard.relevance)
        shard.summaries = summaries(
            shard.relevance, shard.logits, shard.target, np.ones(4), None, np.arange(4), None, "tiny", 0, "audit-test"
        )
        store.write_shard(shard)
        frame = open_audit(str(tmp_path)).summaries
        assert frame["relevance_entropy"].isna().all() and frame["relevance_sparsity"].isna().all()
        (tmp_path / "summaries" / "part-000000.parquet").unlink()
        (tmp_path / "manifest" / "shard-000000.json").unlink()
