"""Colours and scaling of heatmaps: white at zero, red positive, blue negative, symmetric per map."""

from __future__ import annotations

import numpy as np
import pytest

from lrp_tasks.report.heatmap import heatmap_rgb, overlay_rgb, symmetric_scale, to_2d, to_uint8

WHITE, RED, BLUE = (255, 255, 255), (255, 0, 0), (0, 0, 255)


def test_zero_is_exactly_white_positive_red_negative_blue() -> None:
    r = np.array([[0.0, 2.0, -2.0, 1.0]])
    px = to_uint8(heatmap_rgb(r))[0]
    assert tuple(px[0]) == WHITE
    assert tuple(px[1]) == RED and tuple(px[2]) == BLUE
    # half of +max: a lighter red (red channel full, the others in between)
    assert px[3][0] == 255 and 0 < px[3][1] < 255 and px[3][1] == px[3][2]


def test_channels_are_summed_and_scaling_is_symmetric_per_map() -> None:
    r = np.zeros((3, 2, 2))
    r[:, 0, 0] = [1.0, 1.0, 1.0]  # sums to 3: the maximum
    r[0, 1, 1] = -1.0  # -1 is a third of the scale: a light blue, not saturated
    assert to_2d(r).tolist() == [[3.0, 0.0], [0.0, -1.0]]
    px = to_uint8(heatmap_rgb(r))
    assert tuple(px[0, 0]) == RED and tuple(px[0, 1]) == WHITE
    assert px[1, 1][2] == 255 and 0 < px[1, 1][0] < 255
    # scaling by the 50th percentile of |R| saturates the larger values
    assert symmetric_scale(np.array([1.0, 2.0, 3.0, 4.0]), 50) == pytest.approx(2.5)
    assert tuple(to_uint8(heatmap_rgb(np.array([[4.0, -4.0, 0.1, 0.0]]), percentile=50))[0, 1]) == BLUE


def test_all_zero_map_is_white_and_overlay_shows_the_input_where_nothing_is_relevant() -> None:
    assert (to_uint8(heatmap_rgb(np.zeros((1, 4, 4)))) == 255).all()
    image = np.array([[[0.0, 1.0], [0.5, 1.0]]])
    rel = np.array([[[0.0, 0.0], [0.0, 1.0]]])
    out = overlay_rgb(rel, image)
    np.testing.assert_allclose(out[0, 0], [0, 0, 0])  # black input, no relevance: black
    np.testing.assert_allclose(out[1, 0], [0.5, 0.5, 0.5])
    np.testing.assert_allclose(out[1, 1], [1, 0, 0])  # full relevance: the colour


def test_bad_inputs_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="unknown matplotlib colormap 'nope'"):
        heatmap_rgb(np.ones((2, 2)), cmap="nope")
    with pytest.raises(ValueError, match="percentile must be in"):
        heatmap_rgb(np.ones((2, 2)), percentile=0)
    with pytest.raises(ValueError, match="cannot draw a relevance map of shape"):
        heatmap_rgb(np.ones((1, 2, 2, 2)))
