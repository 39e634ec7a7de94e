"""`lrp-audit heatmaps` and the notebook figures on a demo audit: PNG sizes and colours, grid counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from flows.cli import main
from lrp_tasks.report import open_audit, select_samples

ZOOM = 12  # 8×8 digits are drawn at 96×96 pixels (auto_upscale to ≥ 96)


def _pixel(png: np.ndarray, row: int, col: int, panel: int) -> tuple[int, ...]:
    """Centre pixel of relevance position (row, col) in panel 0 (input) or 1 (relevance)."""
    x0 = panel * (8 * ZOOM + 2 * ZOOM)
    return tuple(int(v) for v in png[row * ZOOM + ZOOM // 2, x0 + col * ZOOM + ZOOM // 2])


def test_heatmaps_command_writes_one_png_per_sample_and_a_grid(alpha_beta_audit: Path, tmp_path: Path) -> None:
    out = tmp_path / "maps"
    rc = main(["heatmaps", str(alpha_beta_audit), "--top", "6", "--by", "relevance_entropy", "-o", str(out)])
    assert rc == 0
    pngs = sorted(out.glob("0*-sample-*.png"))
    assert len(pngs) == 6 and (out / "grid.png").exists()
    listed = pd.read_csv(out / "samples.csv")
    assert listed["relevance_entropy"].is_monotonic_decreasing and len(listed) == 6
    audit = open_audit(str(alpha_beta_audit))
    for png_path, row in zip(pngs, listed.itertuples(), strict=True):
        assert png_path.name.endswith(f"-sample-{row.sample_index}.png")
        png = np.asarray(Image.open(png_path).convert("RGB"))
        assert png.shape == (8 * ZOOM, 2 * 8 * ZOOM + 2 * ZOOM, 3)  # input | gap | relevance
        r = audit.heatmap(int(row.sample_index))
        zero = np.argwhere(r == 0)
        assert len(zero), "alpha-beta on the first layer gives exactly zero relevance where the input is 0"
        assert _pixel(png, *zero[0], panel=1) == (255, 255, 255)
        top = _pixel(png, *np.unravel_index(np.argmax(r), r.shape), panel=1)
        assert top[0] == 255 and top[1] == top[2] < 255  # positive: red
        if r.max() >= -r.min():
            assert top == (255, 0, 0)  # the largest |R| saturates
        if r.min() < 0:
            low = _pixel(png, *np.unravel_index(np.argmin(r), r.shape), panel=1)
            assert low[2] == 255 and low[0] == low[1] < 255  # negative: blue
            if -r.min() >= r.max():
                assert low == (0, 0, 255)
    assert any((audit.heatmap(int(i)) < 0).any() for i in listed["sample_index"])  # blue was checked
    grid = Image.open(out / "grid.png")
    assert grid.size[0] > 300 and grid.size[1] > 200


def test_class_and_misclassified_filters(demo_audit: Path, tmp_path: Path) -> None:
    out = tmp_path / "wrong"
    assert main(["heatmaps", str(demo_audit), "--misclassified", "--overlay", "-o", str(out)]) == 0
    listed = pd.read_csv(out / "samples.csv")
    assert len(listed) >= 1 and (listed["label"] != listed["predicted"]).all()
    first = Image.open(next(out.glob("000-sample-*.png")))
    assert first.size == (3 * 8 * ZOOM + 2 * 2 * ZOOM, 8 * ZOOM)  # input | relevance | overlay
    out3 = tmp_path / "three"
    assert main(["heatmaps", str(demo_audit), "--class", "3", "--top", "4", "--ascending", "-o", str(out3)]) == 0
    listed = pd.read_csv(out3 / "samples.csv")
    assert (listed["predicted"] == 3).all() and listed["predicted_probability"].is_monotonic_increasing


def test_unknown_column_is_a_one_line_error(demo_audit: Path, tmp_path: Path, capsys) -> None:
    assert main(["heatmaps", str(demo_audit), "--by", "nope", "-o", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "unknown summary column 'nope'" in err and "relevance_entropy" in err


@pytest.mark.parametrize("top", [1, 5, 16])
def test_grid_figure_has_the_requested_number_of_samples(demo_audit: Path, top: int) -> None:
    audit = open_audit(str(demo_audit))
    fig = audit.grid(by="relevance_sparsity", top=top)
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == 2 * top  # input and heatmap per sample
    chosen = select_samples(audit.summaries, "relevance_sparsity", top)
    captions = [ax.get_title(loc="left") for ax in images if ax.get_title(loc="left")]
    assert [c.split()[0] for c in captions] == [f"#{i}" for i in chosen["sample_index"]]
    assert all("relevance_sparsity=" in c and "p=" in c for c in captions)
    assert all("label " in c and " → " in c for c in captions)


def test_plot_of_one_sample_and_heatmap_still_returns_the_array(demo_audit: Path) -> None:
    audit = open_audit(str(demo_audit))
    assert isinstance(audit.heatmap(5), np.ndarray) and audit.heatmap(5).shape == (8, 8)
    fig = audit.plot(5)
    assert len([ax for ax in fig.axes if ax.images]) == 3  # input, heatmap, overlay
    with pytest.raises(IndexError):
        audit.plot(100_000)


def test_an_audit_without_inputs_draws_maps_alone(tmp_path: Path) -> None:
    from lrp_tasks.report import write_report
    from tests.report.demo_audits import write_demo_audit

    bare = write_demo_audit(
        tmp_path / "bare", storage={"keep_input": False}, dataset={"kind": "digits", "split": "test"}
    )
    assert main(["heatmaps", str(bare), "--top", "3", "--overlay", "-o", str(tmp_path / "maps")]) == 0
    first = Image.open(next((tmp_path / "maps").glob("000-sample-*.png")))
    assert first.size == (8 * ZOOM, 8 * ZOOM)  # no input kept: the relevance panel only, no overlay
    assert len([ax for ax in open_audit(str(bare)).grid(top=3).axes if ax.images]) == 3
    assert "data:image/png;base64," in Path(write_report(open_audit(str(bare)))).read_text()
