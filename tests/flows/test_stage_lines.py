"""Steps after the shards say what they do: the spray flow reports each class as it finishes, and the
command line's plain display writes stage lines between its progress lines."""

from __future__ import annotations

import io

from flows.console import PlainProgressLines
from flows.progress import Progress, add_stage_listener, remove_stage_listener
from flows.spray import spray
from lrp_tasks.analysis import SpraySpec
from tests.analysis.spray_helpers import write_audit


def test_the_spray_flow_reports_every_class_as_it_finishes(tmp_path):
    write_audit(tmp_path / "audit")
    stages: list[str] = []
    add_stage_listener(stages.append)
    try:
        spray(audit_path=str(tmp_path / "audit"), spec=SpraySpec(k_max=4, layout="none"), use_ray=False)
    finally:
        remove_stage_listener(stages.append)
    assert [s.split(" (")[0] for s in stages] == [f"SpRAy: class {c} done" for c in range(3)]
    assert [s.split(" (")[1].split(",")[0] for s in stages] == ["1 of 3", "2 of 3", "3 of 3"]


def test_stage_lines_come_between_the_progress_lines():
    stream = io.StringIO()
    display = PlainProgressLines(stream, interval=600)
    p = Progress(total_shards=1)
    display(p)
    p.shard_done(10, seconds=1.0)
    display(p)
    display.stage("writing the report (statistics, heatmaps, report.html)")
    display.close()
    lines = stream.getvalue().splitlines()
    assert lines[-1] == "lrp-audit: writing the report (statistics, heatmaps, report.html)"
    assert lines[-2].startswith("lrp-audit: 1/1 shards (100%)")
