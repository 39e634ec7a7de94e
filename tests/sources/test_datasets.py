"""Dataset sources read the same samples in the same order across runs and shard boundaries,
without loading the whole dataset."""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from lrp_tasks.config import ArraySpec, DigitsSpec, Preprocessing, ZarrSpec, parse_config
from lrp_tasks.sources import (
    ArraySource,
    Batch,
    DatasetError,
    DatasetSource,
    DigitsSource,
    ZarrSource,
    digits_split,
    open_dataset,
    open_source,
)

N = 37
SHAPE = (3, 4, 5)


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(N, *SHAPE)).astype(np.float64), rng.integers(0, 5, size=N).astype(np.int32)


def digits(tmp_path: Path) -> DatasetSource:
    return DigitsSource(DigitsSpec(kind="digits", repeat=2))


def npy(tmp_path: Path) -> DatasetSource:
    x, y = data()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    return ArraySource(ArraySpec(kind="array", path="x.npy", labels_path="y.npy"), root=tmp_path)


def npz_stored(tmp_path: Path) -> DatasetSource:
    x, y = data()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    return ArraySource(ArraySpec(kind="array", path=str(tmp_path / "d.npz"), array="x", labels="y"))


def npz_compressed(tmp_path: Path) -> DatasetSource:
    x, y = data()
    np.savez_compressed(tmp_path / "d.npz", samples=x, labels=y)
    return ArraySource(ArraySpec(kind="array", path="d.npz", array="samples", labels="labels"), root=tmp_path)


def zarr_group(tmp_path: Path) -> DatasetSource:
    import zarr

    x, y = data()
    group = zarr.open_group(tmp_path / "d.zarr", mode="w")
    group.create_array("x", shape=x.shape, chunks=(8, *SHAPE), dtype="float32")[:] = x
    group.create_array("y", shape=y.shape, chunks=(8,), dtype="int64")[:] = y
    return ZarrSource(ZarrSpec(kind="zarr", path="d.zarr", array="x", labels="y"), root=tmp_path)


SOURCES: dict[str, Callable[[Path], DatasetSource]] = {
    "digits": digits,
    "npy": npy,
    "npz-stored": npz_stored,
    "npz-compressed": npz_compressed,
    "zarr": zarr_group,
}


def same(a: Batch, b: Batch) -> None:
    assert torch.equal(a.x, b.x)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.index, b.index)
    assert a.ids == b.ids


def concat(*batches: Batch) -> Batch:
    return Batch(
        x=torch.cat([b.x for b in batches]),
        labels=np.concatenate([b.labels for b in batches]),
        index=np.concatenate([b.index for b in batches]),
        ids=[i for b in batches for i in b.ids],
    )


def part(batch: Batch, rows: slice) -> Batch:
    return Batch(batch.x[rows], batch.labels[rows], batch.index[rows], batch.ids[rows])


@pytest.fixture(params=list(SOURCES))
def source(request: pytest.FixtureRequest, tmp_path: Path) -> DatasetSource:
    return SOURCES[request.param](tmp_path)


def test_shards_join_up_exactly(source: DatasetSource) -> None:
    same(concat(source.read(0, 10), source.read(10, 20)), source.read(0, 20))
    n = len(source)
    same(concat(source.read(n - 7, n - 3), source.read(n - 3, n)), source.read(n - 7, n + 50))


def test_batch_types_and_shapes(source: DatasetSource) -> None:
    batch = source.read(3, 9)
    assert batch.x.dtype == torch.float32 and batch.x.shape == (6, *source.sample_shape)
    assert batch.labels.dtype == np.int64 and batch.index.dtype == np.int64
    np.testing.assert_array_equal(batch.index, np.arange(3, 9))
    assert len(batch) == 6 and len(set(batch.ids)) == 6
    empty = source.read(5, 5)
    assert empty.x.shape == (0, *source.sample_shape) and empty.ids == []


def test_same_samples_across_runs_and_pickling(source: DatasetSource, tmp_path: Path) -> None:
    first = source.read(4, 15)
    again = pickle.loads(pickle.dumps(source))  # what a Ray worker receives
    same(again.read(4, 15), first)
    assert again.dataset_id == source.dataset_id


def test_reads_out_of_range_are_refused(source: DatasetSource) -> None:
    with pytest.raises(IndexError):
        source.read(-1, 3)
    with pytest.raises(IndexError):
        source.read(5, 2)
    with pytest.raises(IndexError):
        source.read(len(source) + 1, len(source) + 2)


@pytest.mark.parametrize(
    "make", [npy, npz_stored, npz_compressed, zarr_group], ids=["npy", "stored", "compressed", "zarr"]
)
def test_array_sources_return_the_stored_values(make: Callable[[Path], DatasetSource], tmp_path: Path) -> None:
    x, y = data()
    source = make(tmp_path)
    assert len(source) == N and source.sample_shape == SHAPE
    batch = source.read(0, N)
    np.testing.assert_allclose(batch.x.numpy(), x.astype(np.float32))
    np.testing.assert_array_equal(batch.labels, y)
    assert batch.ids == [str(i) for i in range(N)]


def test_npy_is_memory_mapped(tmp_path: Path) -> None:
    source = npy(tmp_path)
    source.read(0, 2)
    assert isinstance(source.samples._handle_map, np.memmap)


def test_unlabelled_arrays_have_label_minus_one(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((4, 2), dtype=np.float32))
    source = open_source(ArraySpec(kind="array", path="x.npy"), root=tmp_path)
    np.testing.assert_array_equal(source.read(0, 4).labels, [-1, -1, -1, -1])


def test_array_errors_are_specific(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((4, 2)))
    np.save(tmp_path / "short.npy", np.zeros(3, dtype=np.int64))
    np.save(tmp_path / "float_labels.npy", np.zeros(4))
    np.savez(tmp_path / "two.npz", a=np.zeros((4, 2)), b=np.zeros((4, 2)))
    cases = [
        (ArraySpec(kind="array", path="missing.npy"), "array file not found: missing.npy"),
        (ArraySpec(kind="array", path="x.npy", labels_path="short.npy"), "1-d array of 4 entries"),
        (ArraySpec(kind="array", path="x.npy", labels_path="float_labels.npy"), "must be integers"),
        (ArraySpec(kind="array", path="two.npz"), "holds arrays a, b: name one with dataset.array"),
        (ArraySpec(kind="array", path="two.npz", array="c"), "has no array 'c' (it holds a, b)"),
    ]
    for spec, reason in cases:
        with pytest.raises(DatasetError, match=re.escape(reason)):
            open_source(spec, root=tmp_path)


def test_object_arrays_are_refused_without_unpickling(tmp_path: Path) -> None:
    np.save(tmp_path / "obj.npy", np.array([[{"a": 1}]], dtype=object), allow_pickle=True)
    with pytest.raises(DatasetError, match="holds Python objects"):
        open_source(ArraySpec(kind="array", path="obj.npy"), root=tmp_path)


def test_digits_splits() -> None:
    test, train = digits_split("test"), digits_split("train")
    assert len(test) == 360 and len(train) == 1437
    assert not set(test) & set(train)
    source = DigitsSource(DigitsSpec(kind="digits", split="test"))
    batch = source.read(0, 5)
    assert batch.ids == [str(i) for i in test[:5]]
    assert float(batch.x.min()) >= 0.0 and float(batch.x.max()) <= 1.0


def test_digits_repeat_jitter_depends_on_the_sample_index_only() -> None:
    source = DigitsSource(DigitsSpec(kind="digits", repeat=3, jitter=0.1))
    n = 1797
    assert len(source) == 3 * n
    original, copy1, copy2 = (source.read(k * n + 11, k * n + 12) for k in range(3))
    assert copy1.ids == ["11#1"] and copy2.ids == ["11#2"] and original.ids == ["11"]
    assert copy1.labels[0] == original.labels[0]
    assert not torch.equal(copy1.x, original.x) and not torch.equal(copy1.x, copy2.x)
    assert float((copy1.x - original.x).abs().max()) < 0.6
    # the same sample read inside different shards: identical values
    same(copy1, part(source.read(n + 6, n + 20), slice(5, 6)))
    assert torch.equal(DigitsSource(DigitsSpec(kind="digits", repeat=3, jitter=0.1)).read(n + 11, n + 12).x, copy1.x)


def test_preprocessing_scale_mean_std(tmp_path: Path) -> None:
    x = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    np.save(tmp_path / "x.npy", x)
    prep = Preprocessing(scale=0.5, mean=[1.0, 2.0], std=[2.0, 4.0])
    got = open_source(ArraySpec(kind="array", path="x.npy"), prep, root=tmp_path).read(0, 2).x.numpy()
    expected = (x * 0.5 - np.array([1.0, 2.0])[:, None]) / np.array([2.0, 4.0])[:, None]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    with pytest.raises(DatasetError, match=r"preprocessing\.mean has 3 values"):
        open_source(ArraySpec(kind="array", path="x.npy"), Preprocessing(mean=[0, 0, 0]), root=tmp_path).read(0, 1)


def test_dataset_id_tracks_content_and_preprocessing(tmp_path: Path) -> None:
    a = npy(tmp_path)
    assert a.dataset_id.startswith("array:x.npy@")
    assert npy(tmp_path).dataset_id == a.dataset_id
    scaled = ArraySource(ArraySpec(kind="array", path="x.npy"), Preprocessing(scale=2.0), root=tmp_path)
    assert scaled.dataset_id != a.dataset_id
    np.save(tmp_path / "x.npy", data()[0] + 1)
    assert (
        ArraySource(ArraySpec(kind="array", path="x.npy", labels_path="y.npy"), root=tmp_path).dataset_id
        != a.dataset_id
    )
    assert (
        DigitsSource(DigitsSpec(kind="digits")).dataset_id
        != DigitsSource(DigitsSpec(kind="digits", repeat=2)).dataset_id
    )


def test_open_dataset_from_a_config() -> None:
    cfg = parse_config(
        {
            "name": "d",
            "output": "out",
            "model": {"kind": "builder", "builder": "a:b"},
            "dataset": {"kind": "digits", "split": "test"},
            "preprocessing": {"mean": [0.5]},
        }
    )
    source = open_dataset(cfg)
    assert len(source) == 360 and source.sample_shape == (1, 8, 8)
    assert float(source.read(0, 360).x.min()) == -0.5


def test_zarr_missing_array(tmp_path: Path) -> None:
    zarr_group(tmp_path)
    with pytest.raises(DatasetError, match="has no array 'z'"):
        ZarrSource(ZarrSpec(kind="zarr", path=str(tmp_path / "d.zarr"), array="z"))
    with pytest.raises(DatasetError, match="cannot open Zarr group"):
        ZarrSource(ZarrSpec(kind="zarr", path=str(tmp_path / "none.zarr"), array="x"))
