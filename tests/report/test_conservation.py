"""The report's conservation warning names its cause: biases kept by the rules, not an unsupported layer."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
from torch import nn

from lrp_tasks import engine
from lrp_tasks.report import write_report
from lrp_tasks.report.conservation import bias_terms, conservation_cause
from lrp_tasks.store import open_audit


def _model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3, bias=False)
    ).eval()


def test_bias_terms_read_from_the_rules_as_assigned():
    printout = repr(engine.LRP(engine.canonize(_model()), engine.EpsilonPlus()))
    terms = bias_terms(printout)
    assert terms.weighted == ["0", "4"] and terms.keeping == ["0"]  # the fused BatchNorm is the conv's bias
    assert "1 of 2 weighted layers have a bias" in conservation_cause(printout)
    kept_none = engine.Composite(engine.GlobalTypeMap({nn.Conv2d: engine.ZPlusRule(zero_bias=True)}))
    no_bias = repr(engine.LRP(engine.canonize(_model()), kept_none))
    assert bias_terms(no_bias).keeping == []
    assert "unsupported layer or rule" in conservation_cause(no_bias)


def test_report_warning_blames_biases_on_a_biased_model(demo_audit: Path, tmp_path: Path) -> None:
    audit = tmp_path / "broken"
    shutil.copytree(demo_audit, audit)
    for part in (audit / "summaries").glob("part-*.parquet"):
        frame = pd.read_parquet(part)
        frame["conservation_error"] = -0.5
        frame.to_parquet(part)
    text = Path(write_report(open_audit(str(audit)))).read_text()
    warning = text.split('id="conservation-warning"')[1].split("</p>")[0]
    assert "biases absorb relevance" in warning and "zero_bias=True" in warning
    assert "unsupported layer" not in warning.replace("not a sign of an unsupported layer", "")
