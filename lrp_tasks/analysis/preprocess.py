"""Relevance maps → the vectors SpRAy compares: channels summed, sum-pooled, normalized per map.

Sum-pooling keeps the total relevance of each region (a stamp of a few pixels stays visible after
pooling), and the pooled maps are small enough (≤ 32×32 by default) for neighbour search to be cheap.
"""

from __future__ import annotations

import math

import numpy as np

NORMALIZATIONS = ("l2", "max_abs", "none")


def to_2d(maps: np.ndarray, sample_ndim: int) -> np.ndarray:
    """``(n, *sample_shape)`` → ``(n, h, w)``: channels (the first sample axis of a 3-D sample) summed;
    1-D samples become 1×F maps."""
    if sample_ndim == 3:
        return maps.sum(axis=1, dtype=np.float32)
    if sample_ndim == 2:
        return maps.astype(np.float32, copy=False)
    if sample_ndim == 1:
        return maps.astype(np.float32, copy=False)[:, None, :]
    raise ValueError(
        f"SpRAy needs 1-, 2- or 3-D samples (features, height×width or channel×height×width), got {sample_ndim}-D"
    )


def pool_factors(height: int, width: int, max_side: int) -> tuple[int, int]:
    """Smallest integer pooling factors that bring each side to at most ``max_side``."""
    return max(1, math.ceil(height / max_side)), max(1, math.ceil(width / max_side))


def pooled_shape(height: int, width: int, max_side: int) -> tuple[int, int]:
    fh, fw = pool_factors(height, width, max_side)
    return math.ceil(height / fh), math.ceil(width / fw)


def sum_pool(maps: np.ndarray, max_side: int) -> np.ndarray:
    """``(n, h, w)`` sum-pooled by whole factors to at most ``max_side`` per side (edges zero-padded)."""
    n, h, w = maps.shape
    fh, fw = pool_factors(h, w, max_side)
    if fh == 1 and fw == 1:
        return maps
    ph, pw = pooled_shape(h, w, max_side)
    if ph * fh != h or pw * fw != w:
        padded = np.zeros((n, ph * fh, pw * fw), dtype=maps.dtype)
        padded[:, :h, :w] = maps
        maps = padded
    return maps.reshape(n, ph, fh, pw, fw).sum(axis=(2, 4))


def normalize(vectors: np.ndarray, how: str) -> np.ndarray:
    """Scale each row in place: unit L2 norm, unit max |value|, or not at all. All-zero rows stay zero."""
    if how == "none":
        return vectors
    if how == "l2":
        scale = np.sqrt(np.einsum("ij,ij->i", vectors, vectors).astype(np.float64))
    elif how == "max_abs":
        scale = np.abs(vectors).max(axis=1).astype(np.float64)
    else:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {how!r}")
    scale[scale == 0] = 1.0
    vectors /= scale.astype(vectors.dtype)[:, None]
    return vectors


def prepare(maps: np.ndarray, sample_ndim: int, max_side: int, how: str) -> tuple[np.ndarray, tuple[int, int]]:
    """Raw relevance ``(n, *sample_shape)`` → float32 rows ``(n, ph*pw)`` and the pooled map shape."""
    pooled = sum_pool(to_2d(maps, sample_ndim), max_side)
    shape = pooled.shape[1:]
    rows = np.ascontiguousarray(pooled.reshape(len(pooled), -1), dtype=np.float32)
    return normalize(rows, how), (int(shape[0]), int(shape[1]))
