"""Per-sample statistics: the pinned schema and the value of every column on hand-checkable maps."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lrp_tasks.audit.summaries import summarize, summary_table
from lrp_tasks.store.schema import METRIC_COLUMNS, SUMMARY_PANDAS_DTYPES, SUMMARY_SCHEMA, empty_summaries

# The documented contract (docs/store.md). Changing it is a format change: update both on purpose.
PINNED = [
    ("sample_index", pa.int64()),
    ("sample_id", pa.string()),
    ("dataset", pa.string()),
    ("label", pa.int64()),
    ("predicted", pa.int64()),
    ("predicted_probability", pa.float32()),
    ("target", pa.int64()),
    ("target_rank", pa.int16()),
    ("logit", pa.float32()),
    ("relevance_sum", pa.float64()),
    ("seed_relevance", pa.float64()),
    ("conservation_error", pa.float64()),
    ("positive_relevance", pa.float64()),
    ("negative_relevance", pa.float64()),
    ("relevance_entropy", pa.float64()),
    ("relevance_sparsity", pa.float64()),
    ("topk_positions", pa.list_(pa.field("element", pa.int64(), nullable=False))),
    ("topk_values", pa.list_(pa.field("element", pa.float32(), nullable=False))),
    ("shard_id", pa.int32()),
    ("audit_id", pa.string()),
    ("explained_at", pa.timestamp("us", tz="UTC")),
    # Faithfulness (NaN unless the audit's metrics: section configures them)
    ("region_perturbation_aopc_morf", pa.float64()),
    ("region_perturbation_aopc_lerf", pa.float64()),
    ("region_perturbation_aopc_random", pa.float64()),
    ("region_perturbation_morf_minus_random", pa.float64()),
    ("pixel_flipping_aopc_morf", pa.float64()),
    ("pixel_flipping_aopc_lerf", pa.float64()),
    ("pixel_flipping_aopc_random", pa.float64()),
    ("pixel_flipping_morf_minus_random", pa.float64()),
]

WHEN = dt.datetime(2026, 1, 31, 12, 0, 0, 123456, tzinfo=dt.UTC)


def small_frame(**kw) -> pd.DataFrame:
    rel = np.zeros((2, 1, 2, 3), np.float32)
    rel[0, 0] = [[1, 1, 1], [1, 1, 1]]  # uniform: max entropy, Gini 0
    rel[1, 0] = [[0, 0, 4], [0, -1, 0]]  # concentrated, one negative
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]], np.float32)
    args = dict(
        relevance=rel,
        logits=logits,
        targets=np.array([0, 2]),
        seed_relevance=np.array([6.0, 3.0]),
        labels=None,
        sample_index=np.array([10, 11]),
        sample_ids=None,
        dataset="toy",
        shard_id=3,
        audit_id="a1",
        explained_at=WHEN,
    )
    args.update(kw)
    return summarize(**args)


def test_schema_pins_every_column_and_dtype(tmp_path) -> None:
    assert [(f.name, f.type) for f in SUMMARY_SCHEMA] == PINNED
    assert [f.name for f in SUMMARY_SCHEMA if f.nullable] == list(METRIC_COLUMNS)

    df = small_frame()
    assert list(df.columns) == [name for name, _ in PINNED]
    assert {c: str(t) for c, t in df.dtypes.items()} == SUMMARY_PANDAS_DTYPES

    table = pa.Table.from_pandas(df, schema=SUMMARY_SCHEMA, preserve_index=False)
    pq.write_table(table, tmp_path / "x.parquet")
    assert pq.read_schema(tmp_path / "x.parquet").remove_metadata().equals(SUMMARY_SCHEMA)
    back = pd.read_parquet(tmp_path / "x.parquet")
    assert {c: str(t) for c, t in back.dtypes.items()} == SUMMARY_PANDAS_DTYPES
    assert {c: str(t) for c, t in empty_summaries().dtypes.items()} == SUMMARY_PANDAS_DTYPES


def test_values_on_hand_checked_maps() -> None:
    df = small_frame()
    r0, r1 = df.iloc[0], df.iloc[1]
    assert df["sample_index"].tolist() == [10, 11]
    assert df["sample_id"].tolist() == ["10", "11"]
    assert df["label"].tolist() == [-1, -1]
    assert df["predicted"].tolist() == [0, 2]
    p0 = np.exp(2) / (np.exp(2) + np.exp(1) + 1)
    assert r0["predicted_probability"] == pytest.approx(p0, rel=1e-6)
    assert df["logit"].tolist() == [2.0, 3.0]
    assert df["target_rank"].tolist() == [0, 0]

    assert r0["relevance_sum"] == 6.0 and r0["conservation_error"] == 0.0
    assert r1["relevance_sum"] == 3.0 and r1["seed_relevance"] == 3.0
    assert (r1["positive_relevance"], r1["negative_relevance"]) == (4.0, -1.0)
    assert r0["relevance_entropy"] == pytest.approx(np.log(6))
    assert r0["relevance_sparsity"] == pytest.approx(0.0, abs=1e-12)
    p = np.array([4, 1]) / 5
    assert r1["relevance_entropy"] == pytest.approx(-(p * np.log(p)).sum())
    # Gini of |R| = [0,0,0,0,1,4]: sum_i (2i - n - 1) x_(i) / (n sum x) = (3*1 + 5*4) / (6*5)
    assert r1["relevance_sparsity"] == pytest.approx(23 / 30)

    assert list(r1["topk_positions"]) == [2, 0, 1, 3, 5]  # 4 first, then zeros by index, -1 last
    assert list(r1["topk_values"]) == [4.0, 0.0, 0.0, 0.0, 0.0]
    assert list(r0["topk_positions"]) == [0, 1, 2, 3, 4]
    assert df["shard_id"].tolist() == [3, 3] and df["audit_id"].tolist() == ["a1", "a1"]
    assert (df["explained_at"] == pd.Timestamp(WHEN)).all()


def test_zero_map_has_undefined_entropy_and_sparsity() -> None:
    df = small_frame(relevance=np.zeros((2, 1, 2, 3), np.float32))
    assert df["relevance_entropy"].isna().all() and df["relevance_sparsity"].isna().all()
    assert (df["relevance_sum"] == 0).all()
    assert (df["conservation_error"] == -df["seed_relevance"]).all()


def test_top_k_explanations_give_one_row_per_target() -> None:
    rng = np.random.default_rng(0)
    n, k = 3, 2
    rel = rng.standard_normal((n, k, 3, 8, 8)).astype(np.float32)
    logits = rng.standard_normal((n, 4)).astype(np.float32)
    targets = np.argsort(-logits, axis=1)[:, :k]
    df = summarize(
        rel,
        logits,
        targets,
        logits[np.arange(n)[:, None], targets],
        [1, 2, 3],
        [0, 1, 2],
        ["a", "b", "c"],
        "ds",
        0,
        "x",
        top_k=4,
    )
    assert len(df) == n * k
    assert df["sample_index"].tolist() == [0, 0, 1, 1, 2, 2]
    assert df["sample_id"].tolist() == ["a", "a", "b", "b", "c", "c"]
    assert df["label"].tolist() == [1, 1, 2, 2, 3, 3]
    assert df["target_rank"].tolist() == [0, 1] * 3
    np.testing.assert_array_equal(df["target"].to_numpy().reshape(n, k), targets)
    np.testing.assert_allclose(df["logit"], logits[np.arange(n)[:, None], targets].reshape(-1))
    assert (df["predicted"] == df["target"].where(df["target_rank"] == 0)).sum() == n
    flat = rel.reshape(n * k, -1)
    np.testing.assert_allclose(df["relevance_sum"], flat.astype(np.float64).sum(axis=1), rtol=1e-10)
    for row, positions in enumerate(df["topk_positions"]):
        np.testing.assert_array_equal(positions, np.argsort(-flat[row], kind="stable")[:4])
    assert ((df["relevance_sparsity"] >= 0) & (df["relevance_sparsity"] < 1)).all()
    assert (df["relevance_entropy"] <= np.log(3 * 8 * 8) + 1e-9).all()


def test_top_k_larger_than_the_map() -> None:
    df = small_frame(top_k=50)
    assert all(len(p) == 6 for p in df["topk_positions"])


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"logits": np.zeros(3)}, "logits must be"),
        ({"targets": np.array([0, 5])}, r"targets must lie in \[0, 3\)"),
        ({"targets": np.array([0.0, 1.0])}, "targets must be integers"),
        ({"seed_relevance": np.ones(3)}, "seed_relevance must have the shape"),
        ({"relevance": np.zeros((3, 2, 2))}, "relevance must be"),
        ({"sample_ids": ["a"]}, "sample_ids must have 2 entries"),
        ({"labels": [1, 2, 3]}, r"labels must have shape \(2,\)"),
    ],
)
def test_bad_inputs_are_named(kw, message) -> None:
    with pytest.raises(ValueError, match=message):
        small_frame(**kw)


def test_top_k_ties_are_broken_by_lowest_index() -> None:
    rel = np.zeros((3, 1, 10, 10), np.float32)
    rel[1, 0, 9, 9] = 2.0  # one positive, then 99 tied zeros
    rel[2] = 1.0  # all tied
    rel[2, 0, 5, 5] = -1.0
    df = small_frame(
        relevance=rel,
        logits=np.zeros((3, 3), np.float32),
        targets=np.array([0, 0, 0]),
        seed_relevance=np.ones(3),
        sample_index=[0, 1, 2],
    )
    assert [list(p) for p in df["topk_positions"]] == [[0, 1, 2, 3, 4], [99, 0, 1, 2, 3], [0, 1, 2, 3, 4]]
    assert list(df["topk_values"][1]) == [2.0, 0.0, 0.0, 0.0, 0.0]


def test_top_k_matches_a_stable_sort_with_many_ties() -> None:
    rng = np.random.default_rng(7)
    n = 40
    rel = rng.integers(-2, 3, (n, 1, 8, 8)).astype(np.float32)  # 5 distinct values: ties everywhere
    df = small_frame(
        relevance=rel,
        logits=np.zeros((n, 3), np.float32),
        targets=np.zeros(n, np.int64),
        seed_relevance=np.ones(n),
        sample_index=np.arange(n),
    )
    expected = np.argsort(-rel.reshape(n, -1), axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(np.stack(df["topk_positions"].to_list()), expected)


@pytest.mark.parametrize("shape", [(3, 32, 32), (3, 17, 29)])  # large maps: grouped top-k, with a remainder
@pytest.mark.parametrize("values", ["ties", "floats", "sparse"])
def test_top_k_of_large_maps_matches_a_stable_sort(shape, values) -> None:
    rng = np.random.default_rng(11)
    n = 30
    if values == "ties":
        rel = rng.integers(-3, 4, (n, *shape)).astype(np.float32)
    elif values == "floats":
        rel = rng.standard_normal((n, *shape)).astype(np.float32)
    else:  # mostly exact zeros, fewer than 5 positive values in some rows
        rel = (rng.standard_normal((n, *shape)) * (rng.random((n, *shape)) < 0.001)).astype(np.float32)
    rel[0] = 0.0
    rel[1] = -1.0
    df = small_frame(
        relevance=rel,
        logits=np.zeros((n, 3), np.float32),
        targets=np.zeros(n, np.int64),
        seed_relevance=np.ones(n),
        sample_index=np.arange(n),
    )
    flat = rel.reshape(n, -1)
    expected = np.argsort(-flat, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(np.stack(df["topk_positions"].to_list()), expected)
    np.testing.assert_array_equal(np.stack(df["topk_values"].to_list()), np.take_along_axis(flat, expected, axis=1))


def test_statistics_match_plain_float64_formulas() -> None:
    rng = np.random.default_rng(3)
    rel = rng.standard_normal((7, 3, 20, 20)).astype(np.float32)
    rel[2] = 0.0
    rel[3, :, :5] = 0.0  # exact zeros: x log x = 0 there
    df = small_frame(
        relevance=rel,
        logits=np.zeros((7, 3), np.float32),
        targets=np.zeros(7, np.int64),
        seed_relevance=np.ones(7),
        sample_index=np.arange(7),
    )
    flat = rel.reshape(7, -1).astype(np.float64)
    mag = np.abs(flat)
    total = mag.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = mag / total[:, None]
        entropy = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0).sum(axis=1)
        d = flat.shape[1]
        gini = (np.sort(mag, axis=1) @ (2.0 * np.arange(1, d + 1) - d - 1)) / (d * total)
    ok = total > 0
    np.testing.assert_allclose(df["relevance_sum"], flat.sum(axis=1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(df["positive_relevance"], np.where(flat > 0, flat, 0).sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(df["relevance_entropy"][ok], entropy[ok], rtol=1e-6)
    np.testing.assert_allclose(df["relevance_sparsity"][ok], gini[ok], rtol=1e-9)
    assert df["relevance_entropy"].isna().tolist() == (~ok).tolist()


def test_summary_table_is_summarize_as_arrow() -> None:
    rng = np.random.default_rng(5)
    rel = rng.standard_normal((4, 2, 1, 6, 6)).astype(np.float16)  # float16 maps, top-2 targets
    logits = rng.standard_normal((4, 5)).astype(np.float32)
    args = (
        rel,
        logits,
        np.argsort(-logits, axis=1)[:, :2],
        np.ones((4, 2)),
        [0, 1, 2, 3],
        np.arange(4),
        None,
        "d",
        1,
        "a",
    )
    table = summary_table(*args, explained_at=WHEN)
    assert table.schema.equals(SUMMARY_SCHEMA)
    pd.testing.assert_frame_equal(table.to_pandas(), summarize(*args, explained_at=WHEN))
    assert table.num_rows == 8 and table.column("target_rank").to_pylist() == [0, 1] * 4


def test_metric_columns_are_nan_unless_given_and_checked() -> None:
    df = small_frame()
    assert df["region_perturbation_aopc_morf"].isna().all() and df["pixel_flipping_morf_minus_random"].isna().all()
    given = small_frame(metrics={"region_perturbation_aopc_morf": np.array([1.5, -0.5])})
    assert given["region_perturbation_aopc_morf"].tolist() == [1.5, -0.5]
    assert given["region_perturbation_aopc_lerf"].isna().all()
    with pytest.raises(ValueError, match="unknown metric columns"):
        small_frame(metrics={"aopc": np.zeros(2)})
    with pytest.raises(ValueError, match="must have 2 values"):
        small_frame(metrics={"pixel_flipping_aopc_morf": np.zeros(3)})


def test_statistics_are_the_same_on_one_thread_and_several() -> None:
    """Large shards are summarised in parallel row blocks; the rows do not depend on the split."""
    from lrp_tasks.audit.summaries import _PARALLEL_MIN_ELEMENTS, _row_statistics

    rng = np.random.default_rng(7)
    size = 3 * 64 * 64
    rows = _PARALLEL_MIN_ELEMENTS // size + 3
    flat = rng.standard_normal((rows, size), dtype=np.float32)
    flat[1] = 0.0
    one = _row_statistics(flat, 5, threads=1)
    four = _row_statistics(flat, 5, threads=4)
    for key in one:
        np.testing.assert_array_equal(one[key], four[key], err_msg=key)
