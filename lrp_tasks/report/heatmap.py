"""Relevance maps as RGB images: a diverging colormap (red positive, blue negative, white at zero),
scaled symmetrically per map, optionally blended over the grayscale input.

Pure numpy + matplotlib's colormap tables: colours are looked up, never computed pixel by pixel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Colormap

#: matplotlib's blue-white-red. Resampled to an odd number of entries so that the middle entry, where
#: zero relevance lands, is exactly white (the default 256 entries have no middle one).
DEFAULT_CMAP = "bwr"
_LEVELS = 257


def diverging_cmap(name: str = DEFAULT_CMAP) -> Colormap:
    """A registered matplotlib colormap, resampled so that 0.5 hits its exact middle colour."""
    try:
        return colormaps[name].resampled(_LEVELS)
    except KeyError as exc:
        raise ValueError(f"unknown matplotlib colormap {name!r}") from exc


def to_2d(relevance: np.ndarray, channel_axis: int = 0) -> np.ndarray:
    """One map per sample: channels summed for (C, H, W), 2-D kept, 1-D shown as a single row."""
    arr = np.asarray(relevance, dtype=np.float64)
    if arr.ndim == 3:
        return arr.sum(axis=channel_axis)
    if arr.ndim == 2:
        return arr
    if arr.ndim == 1:
        return arr[None, :]
    raise ValueError(f"cannot draw a relevance map of shape {arr.shape}: expected 1-D, 2-D or (C, H, W)")


def symmetric_scale(relevance: np.ndarray, percentile: float | None = None) -> float:
    """The bound m of the colour scale [-m, m]: max |R|, or the given percentile of |R| (values beyond
    it saturate). 0 for an all-zero map."""
    mag = np.abs(np.asarray(relevance, dtype=np.float64))
    if mag.size == 0:
        return 0.0
    if percentile is None:
        return float(mag.max())
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    return float(np.percentile(mag, percentile))


def normalize(relevance: np.ndarray, percentile: float | None = None) -> np.ndarray:
    """R / m clipped to [-1, 1] (m from :func:`symmetric_scale`); zero stays zero."""
    r = to_2d(relevance)
    m = symmetric_scale(r, percentile)
    if m == 0 or not np.isfinite(m):
        return np.zeros_like(r)
    return np.clip(r / m, -1.0, 1.0)


def heatmap_rgb(
    relevance: np.ndarray, percentile: float | None = None, cmap: str = DEFAULT_CMAP, channel_axis: int = 0
) -> np.ndarray:
    """(H, W, 3) float RGB in [0, 1] of one relevance map (channels summed)."""
    r = normalize(to_2d(relevance, channel_axis), percentile)
    return diverging_cmap(cmap)((r + 1.0) / 2.0)[..., :3]


def grayscale(image: np.ndarray, channel_axis: int = 0) -> np.ndarray:
    """(H, W) in [0, 1]: an input image's channels averaged, then stretched to its own min..max."""
    g = to_2d(image, channel_axis)
    if np.asarray(image).ndim == 3:
        g = g / np.asarray(image).shape[channel_axis]
    lo, hi = float(np.nanmin(g)), float(np.nanmax(g))
    return (g - lo) / (hi - lo) if hi > lo else np.zeros_like(g)


def input_rgb(image: np.ndarray, channel_axis: int = 0) -> np.ndarray:
    """(H, W, 3) RGB in [0, 1] to show an input: 3-channel images as colour, anything else as gray."""
    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim == 3 and arr.shape[channel_axis] == 3:
        rgb = np.moveaxis(arr, channel_axis, -1)
        lo, hi = float(rgb.min()), float(rgb.max())
        return (rgb - lo) / (hi - lo) if hi > lo else np.zeros_like(rgb)
    return np.repeat(grayscale(arr, channel_axis)[..., None], 3, axis=-1)


def overlay_rgb(
    relevance: np.ndarray,
    image: np.ndarray,
    percentile: float | None = None,
    cmap: str = DEFAULT_CMAP,
    channel_axis: int = 0,
    strength: float = 1.0,
) -> np.ndarray:
    """The heatmap over the grayscale input: each pixel's colour weight is |R| / m (times ``strength``),
    so irrelevant pixels show the input and strongly relevant ones the colour."""
    r = normalize(to_2d(relevance, channel_axis), percentile)
    gray = grayscale(image, channel_axis)
    if gray.shape != r.shape:
        raise ValueError(f"input {gray.shape} and relevance {r.shape} differ in shape; cannot overlay")
    colour = diverging_cmap(cmap)((r + 1.0) / 2.0)[..., :3]
    alpha = np.clip(np.abs(r) * strength, 0.0, 1.0)[..., None]
    return alpha * colour + (1.0 - alpha) * gray[..., None]


def to_uint8(rgb: np.ndarray, upscale: int = 1) -> np.ndarray:
    """RGB floats in [0, 1] to uint8, each pixel repeated ``upscale`` times per axis (small inputs
    such as 8×8 digits stay crisp instead of being blurred by a viewer's interpolation)."""
    out = np.clip(np.rint(np.asarray(rgb) * 255.0), 0, 255).astype(np.uint8)
    if upscale > 1:
        out = out.repeat(upscale, axis=0).repeat(upscale, axis=1)
    return out


def auto_upscale(shape: Sequence[int], target: int = 128) -> int:
    """An integer zoom that makes the longer side at least ``target`` pixels (1 for large images)."""
    longest = max(int(s) for s in shape[:2])
    return max(1, -(-target // longest))
