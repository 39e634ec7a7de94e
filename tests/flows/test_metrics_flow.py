"""Faithfulness in the audit flow: metrics computed on the Ray workers, the eMPRT check recorded in
the store, and both reported per class by the markdown report and ``lrp-audit summary``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lrp_tasks.report.markdown import faithfulness_markdown, faithfulness_table
from lrp_tasks.store import open_audit
from lrp_tasks.store.schema import METRIC_COLUMNS

from .audit_helpers import result_json, run_cli, write_config

METRICS = {
    "region_perturbation": {"patch_size": 2, "steps": 8, "orders": ["morf", "lerf", "random"], "baseline": "mean"},
    "efficient_mprt": {"samples": 16, "seed": 1, "n_bins": 10},
}


def frame() -> pd.DataFrame:
    rows = pd.DataFrame(
        {
            "sample_index": [0, 1, 2, 3],
            "target": [3, 3, 5, 5],
            "target_rank": [0, 0, 0, 0],
            "region_perturbation_aopc_morf": [2.0, 1.0, 3.0, 0.0],
            "region_perturbation_aopc_random": [1.0, 2.0, 1.0, 1.0],
        }
    )
    rows["region_perturbation_morf_minus_random"] = (
        rows["region_perturbation_aopc_morf"] - rows["region_perturbation_aopc_random"]
    )
    for column in METRIC_COLUMNS:
        if column not in rows:
            rows[column] = np.nan
    return rows


def test_faithfulness_table_has_mean_aopcs_and_the_share_of_morf_beating_random_per_class() -> None:
    table = faithfulness_table(frame())
    assert list(table.index) == [3, 5, "all"]
    assert list(table.columns) == ["samples", "RP AOPC morf", "RP AOPC random", "RP MoRF>random"]
    assert table.loc[3, "RP AOPC morf"] == 1.5 and table.loc[5, "RP AOPC random"] == 1.0
    assert table.loc[3, "RP MoRF>random"] == 0.5 and table.loc["all", "RP MoRF>random"] == 0.5
    assert table.loc["all", "samples"] == 4
    attrs = {
        "sanity_checks": {
            "efficient_mprt": {
                "samples": 16,
                "seed": 1,
                "n_bins": 10,
                "score_mean": 0.25,
                "score_median": 0.2,
                "share_complexity_rises": 0.75,
                "complexity_trained_mean": 1.0,
                "complexity_randomized_mean": 1.25,
            }
        }
    }
    text = faithfulness_markdown(frame(), attrs)
    assert "## Faithfulness" in text and "| class | samples | RP AOPC morf | RP AOPC random | RP MoRF>random |" in text
    assert "| all | 4 | 1.5 | 1.25 | 50.0% |" in text
    assert "Efficient MPRT on 16 samples" in text and "75.0% of samples" in text
    assert faithfulness_table(frame().assign(**dict.fromkeys(METRIC_COLUMNS, np.nan))) is None
    assert faithfulness_markdown(frame().assign(**dict.fromkeys(METRIC_COLUMNS, np.nan)), {}) == ""


@pytest.mark.integration
def test_audit_with_metrics_reports_them_per_class(tmp_path) -> None:
    config = write_config(tmp_path, "metrics", metrics=METRICS, ray={"workers": 1, "cpus_per_worker": 1})
    proc = run_cli("run", str(config), "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert result_json(proc.stdout)["samples_explained"] == 360
    audit = open_audit(str(tmp_path / "audit"))
    assert audit.metric_names == [f"region_perturbation_{o}" for o in ("morf", "lerf", "random")]
    assert audit.metric_curves("region_perturbation_morf").shape == (360, 9)
    frame = audit.summaries
    assert frame["region_perturbation_aopc_morf"].notna().all()
    assert (frame["region_perturbation_morf_minus_random"] > 0).mean() >= 0.9
    record = audit.attrs["sanity_checks"]["efficient_mprt"]
    assert record["samples"] == 16 and len(record["scores"]) == 16
    summary = run_cli("summary", str(tmp_path / "audit"))
    assert summary.returncode == 0, summary.stderr[-3000:]
    assert "faithfulness (AOPC means; MoRF>random: share of samples)" in summary.stdout
    assert "RP MoRF>random" in summary.stdout and "Efficient MPRT on 16 samples" in summary.stdout
