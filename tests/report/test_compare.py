"""Audit-to-audit comparison on demo audits: identical audits are similar 1, two composites give one
row per sample with the expected columns, audits of other data are refused with the reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.cli import main
from lrp_tasks.report import AuditsNotComparableError, compare_audits, open_audit
from lrp_tasks.report.compare import top_rank_correlation
from tests.report.demo_audits import write_demo_audit


def test_identical_audits_have_similarity_one(demo_audit: Path) -> None:
    a = open_audit(str(demo_audit))
    table = compare_audits(a, open_audit(str(demo_audit)))
    assert len(table) == 360
    np.testing.assert_allclose(table["cosine"], 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(table["top_rank_correlation"], 1.0, rtol=0, atol=1e-12)
    assert not table["prediction_changed"].any()
    assert (table.filter(like="delta_").abs().max() == 0).all()


def test_two_composites_give_one_row_per_sample_and_a_parquet_table(
    demo_audit: Path, alpha_beta_audit: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cmp"
    assert main(["compare", str(demo_audit), str(alpha_beta_audit), "-o", str(out)]) == 0
    table = pd.read_parquet(out / "comparison.parquet")
    assert table.shape[0] == 360 and table["sample_index"].tolist() == list(range(360))
    for column in ("predicted_a", "predicted_b", "prediction_changed", "cosine", "top_rank_correlation"):
        assert column in table
    for stat in ("relevance_sum", "relevance_entropy", "relevance_sparsity", "conservation_error"):
        assert f"delta_{stat}" in table
    assert table["cosine"].between(-1, 1).all() and table["cosine"].lt(0.999).all()
    assert not table["prediction_changed"].any()  # same model: only the explanations differ
    a, b = open_audit(str(demo_audit)), open_audit(str(alpha_beta_audit))
    i = 7
    x, y = a.heatmap(i).ravel().astype(np.float64), b.heatmap(i).ravel().astype(np.float64)
    assert table.loc[i, "cosine"] == pytest.approx(x @ y / np.linalg.norm(x) / np.linalg.norm(y), rel=1e-9)
    meta = json.loads((out / "comparison.json").read_text())
    assert meta["summary"]["samples_compared"] == 360 and "EpsilonAlpha2Beta1" not in meta["audit_a"]["composite"]
    html = (out / "comparison.html").read_text()
    assert "most changed" in html and "data:image/png;base64," in html


def test_rank_correlation_matches_scipy_spearman_on_the_top_positions() -> None:
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 50)), rng.normal(size=(5, 50))
    y[2] = x[2]
    x[3, :10] = 1.0  # ties
    got = top_rank_correlation(x, y, 6)
    for r in range(5):
        union = np.union1d(np.argsort(-x[r])[:6], np.argsort(-y[r])[:6])
        assert got[r] == pytest.approx(spearmanr(x[r, union], y[r, union]).statistic, abs=1e-12)
    assert got[2] == pytest.approx(1.0)


def test_audits_of_other_samples_are_refused_with_the_reason(demo_audit: Path, tmp_path: Path, capsys) -> None:
    other = write_demo_audit(tmp_path / "train", dataset={"kind": "digits", "split": "train"})
    with pytest.raises(AuditsNotComparableError, match=r"different datasets: .* 360 samples, .* 1437"):
        compare_audits(open_audit(str(demo_audit)), open_audit(str(other)))
    renamed = tmp_path / "renamed"
    shutil.copytree(demo_audit, renamed)
    for part in (renamed / "summaries").glob("part-*.parquet"):
        frame = pd.read_parquet(part)
        frame["sample_id"] = "x" + frame["sample_id"]
        frame.to_parquet(part)
    assert main(["compare", str(demo_audit), str(renamed)]) == 1
    assert "explain different samples: 360 of 360 sample ids differ" in capsys.readouterr().err
