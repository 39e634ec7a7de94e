"""The HTML report on demo audits: content, self-containment, and a real headless Chromium showing it
with every image loaded and no console error (screenshot kept under tests/artifacts/)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from flows.cli import main
from lrp_tasks.report import open_audit, write_report
from lrp_tasks.report.tables import conservation_check, per_class_table
from tests.report.browser import load_page

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture(scope="module")
def report_with_everything(demo_audit: Path, alpha_beta_audit: Path, tmp_path_factory) -> Path:
    """A copy of the demo audit with every optional section: AOPC columns, SpRAy tables, a comparison."""
    audit = tmp_path_factory.mktemp("full") / "audit"
    shutil.copytree(demo_audit, audit)
    spray = audit / "analysis" / "spray"  # laid out as lrp_tasks.analysis writes it: one part per class
    for sub in ("samples", "clusters", "eigenvalues"):
        (spray / sub).mkdir(parents=True)
    top = open_audit(str(audit)).summaries.query("target_rank == 0")
    for cls, rows in top.groupby("predicted"):
        name = f"class-{cls:06d}.parquet"
        cluster = rows["sample_index"].to_numpy() % 3
        pd.DataFrame(
            {"sample_index": rows["sample_index"], "class": cls, "cluster": cluster, "cluster_rank": cluster}
        ).to_parquet(spray / "samples" / name)
        pd.DataFrame(
            {
                "class": cls,
                "k": 3,
                "cluster": [0, 1, 2],
                "size": [int((cluster == c).sum()) for c in range(3)],
                "score": [0.3, 0.2, 0.1],
                "rank": [0, 1, 2],
                "chosen": True,
            }
        ).to_parquet(spray / "clusters" / name)
        pd.DataFrame({"class": cls, "index": range(8), "eigenvalue": [i / (10 + cls) for i in range(8)]}).to_parquet(
            spray / "eigenvalues" / name
        )
    assert main(["compare", str(alpha_beta_audit), str(audit), "-o", str(audit / "comparison")]) == 0
    return audit


def with_aopc(reader):
    """The reader with AOPC columns in its summaries, as the metrics step adds them to the schema."""
    frame = reader.summaries.copy()
    frame["region_perturbation_aopc_morf"] = 0.5 + 0.1 * (frame["sample_index"] % 3)
    frame["region_perturbation_aopc_random"] = 0.45 + 0.2 * (frame["sample_index"] % 2)
    frame["region_perturbation_morf_minus_random"] = 0.05
    frame["pixel_flipping_aopc_morf"] = float("nan")  # a metric not run: written as NaN, not shown
    reader.__dict__["summaries"] = frame  # replaces the cached property of this reader only
    return reader


def test_report_renders_in_headless_chromium_with_every_image(report_with_everything: Path) -> None:
    path = write_report(with_aopc(open_audit(str(report_with_everything))))
    assert path == str(report_with_everything / "report.html")
    text = Path(path).read_text()
    assert not re.search(r"""(src|href)=["'](https?:|//)""", text), "the report must need no network"
    for anchor in ("overview", "per-class", "least-confident", "misclassified", "faithfulness", "spray", "comparison"):
        assert f'id="{anchor}"' in text
    faith = text[text.index('id="faithfulness"') : text.index('id="spray"')]
    assert "region_perturbation_share_morf_beats_random" in faith and "pixel_flipping" not in faith
    page = load_page(path)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "report-screenshot.png").write_bytes(page.screenshot)
    assert page.title.startswith("LRP audit report")
    assert page.console_errors == []
    alts = " | ".join(i["alt"] for i in page.images)
    for shown in ("least confident", "misclassified", "SpRAy", "eigenvalues", "cosine", "most changed"):
        assert shown in alts
    broken = [i for i in page.images if not (i["complete"] and i["width"] > 0 and i["inline"])]
    assert broken == []


def test_report_command_and_sections_absent_when_the_store_lacks_them(demo_audit: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    assert main(["report", str(demo_audit), "-o", str(out)]) == 0
    text = out.read_text()
    assert 'id="per-class"' in text and "Confusion counts" in text
    for absent in ("faithfulness", "spray", "comparison"):
        assert f'id="{absent}"' not in text
    summaries = open_audit(str(demo_audit)).summaries
    table = per_class_table(summaries, [str(d) for d in range(10)])
    assert table["labelled"].sum() == 360 and table["predicted_as"].sum() == 360
    assert (table["accuracy"] == table["correct"] / table["labelled"]).all()


def test_conservation_warning_appears_when_a_share_of_samples_breaks_it(demo_audit: Path, tmp_path: Path) -> None:
    audit = tmp_path / "broken"
    shutil.copytree(demo_audit, audit)
    for part in (audit / "summaries").glob("part-*.parquet"):
        frame = pd.read_parquet(part)
        frame.loc[frame.index[::4], "conservation_error"] = -0.5  # a quarter of the samples lose half
        frame.to_parquet(part)
    reader = open_audit(str(audit))
    check = conservation_check(reader.summaries)
    assert check["broken_share"] >= 0.25
    assert 'id="conservation-warning"' in Path(write_report(reader)).read_text()
    fine = write_report(open_audit(str(demo_audit)), str(tmp_path / "ok.html"))
    assert 'id="conservation-warning"' not in Path(fine).read_text()


def test_missing_browser_skips_with_the_reason_but_fails_under_ci(tmp_path: Path, monkeypatch) -> None:
    from tests.report.browser import find_chromium

    monkeypatch.setenv("PATH", str(tmp_path))  # no browser on this PATH
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="Chromium not installed"):
        find_chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        find_chromium()
