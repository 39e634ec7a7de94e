"""Maps → rows: channel sum, sum-pooling, normalization."""

from __future__ import annotations

import numpy as np
import pytest

from lrp_tasks.analysis.preprocess import normalize, pooled_shape, prepare, sum_pool, to_2d


def test_channels_are_summed_and_1d_samples_become_one_row_maps():
    maps = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    np.testing.assert_array_equal(to_2d(maps, 3), maps.sum(axis=1))
    assert to_2d(np.ones((2, 7)), 1).shape == (2, 1, 7)
    with pytest.raises(ValueError, match="1-, 2- or 3-D"):
        to_2d(np.ones((2, 1, 2, 3, 4)), 4)


@pytest.mark.parametrize(
    ("size", "max_side", "expected"),
    [(32, 32, (32, 32)), (64, 32, (32, 32)), (224, 32, (32, 32)), (225, 32, (29, 29)), (33, 32, (17, 17))],
)
def test_pooled_shape_is_at_most_max_side(size, max_side, expected):
    assert pooled_shape(size, size, max_side) == expected


def test_sum_pooling_keeps_the_total_and_each_block_sum():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(3, 67, 45)).astype(np.float32)
    pooled = sum_pool(maps, 32)
    assert pooled.shape == (3, 23, 23)  # factors 3 and 2, zero padding at the bottom/right edge
    np.testing.assert_allclose(pooled.sum(axis=(1, 2)), maps.sum(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(pooled[:, 1, 2], maps[:, 3:6, 4:6].sum(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(pooled[:, 22, 22], maps[:, 66:, 44:].sum(axis=(1, 2)), rtol=1e-5)


def test_normalizations():
    rows = np.array([[3.0, 4.0], [0.0, 0.0], [-2.0, 1.0]], dtype=np.float32)
    np.testing.assert_allclose(normalize(rows.copy(), "l2"), [[0.6, 0.8], [0, 0], [-2 / 5**0.5, 1 / 5**0.5]], rtol=1e-6)
    np.testing.assert_allclose(normalize(rows.copy(), "max_abs"), [[0.75, 1.0], [0, 0], [-1.0, 0.5]])
    np.testing.assert_array_equal(normalize(rows.copy(), "none"), rows)
    with pytest.raises(ValueError, match="normalize must be one of"):
        normalize(rows.copy(), "zscore")


def test_prepare_gives_float32_rows_and_the_pooled_shape():
    maps = np.ones((4, 3, 64, 64), dtype=np.float16)
    rows, shape = prepare(maps, 3, 32, "l2")
    assert rows.dtype == np.float32 and rows.shape == (4, 1024) and shape == (32, 32)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, rtol=1e-6)
