"""Counter-based random numbers: the same (seed, sample key, position) always gives the same number.

The random region order and the uniform-noise baseline must not depend on how samples are batched or
which worker (or retry) explains them, so they are a pure function of the seed, a per-explanation key
and the position, computed with the splitmix64 mixer (numpy unsigned 64-bit arithmetic wraps)."""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def uniform(seed: int, keys: np.ndarray, size: int, stream: int = 0) -> np.ndarray:
    """Uniform numbers in [0, 1), shape ``(len(keys), size)``, float64 (53 random bits each).

    ``keys`` identify the explanations (e.g. ``sample_index * k + rank``); ``stream`` separates uses
    of one seed (region order, baseline noise) so they are independent."""
    keys = np.asarray(keys, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        base = _mix(np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * _GOLDEN + np.uint64(stream) + _GOLDEN)
        per_key = _mix(base ^ (keys * _GOLDEN))
        counters = np.arange(size, dtype=np.uint64) * _GOLDEN
        bits = _mix(per_key[:, None] + counters[None, :])
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
