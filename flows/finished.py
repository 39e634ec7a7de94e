"""A finished audit reports and exits without Prefect or Ray (issue 23).

``lrp-audit run`` on an audit whose every shard is committed, with the config, model and dataset it
was made from (the preparation's identity checks), has nothing to explain: starting a Prefect server,
the flow engine and a Ray cluster only to skip every shard took 29 s on the demo. When nothing else is
due either — no ``--fresh``, no comparison, the eMPRT check (when configured) recorded for this
config, SpRAy results (when configured) current — the run re-checks the committed shards (presence
and sizes, as the flow does), rewrites the report, prints the flow's result and stops. Anything else
goes through the flow as before. ``LRP_AUDIT_ALWAYS_FLOW=1`` turns this off (benchmarks/rerun.py
measures both). Neither Prefect nor Ray is imported here."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from lrp_tasks.audit.prepare import Preparation, resume_counts

ALWAYS_FLOW_ENV = "LRP_AUDIT_ALWAYS_FLOW"


def finished_result(preparation: Preparation, args: argparse.Namespace) -> dict[str, Any] | None:
    """The run's result when the audit is finished and nothing else is due, else None (run the flow)."""
    cfg = preparation.config
    if os.environ.get(ALWAYS_FLOW_ENV) == "1" or args.fresh or args.compare_with:
        return None
    counts = resume_counts(preparation)
    if counts is None or counts[0] != counts[1]:
        return None
    if cfg.metrics.efficient_mprt is not None and not _mprt_recorded(cfg, preparation.spec.n_samples):
        return None
    from lrp_tasks.store import check_committed_shards

    if not check_committed_shards(cfg.output, deep=False).ok:  # damaged shards: the flow redoes them
        return None
    spray = _spray_done(cfg)
    if spray is False:
        return None
    return _result(preparation, counts[1], spray)


def _mprt_recorded(cfg: Any, n_samples: int) -> bool:
    """Whether the store holds the eMPRT check of this config: the flow computes it after the last
    shard commits, seeded, on the committed samples, so for a finished audit it would be the same."""
    from lrp_tasks.audit.sanity import ATTRIBUTE
    from lrp_tasks.store import open_audit

    spec = cfg.metrics.efficient_mprt
    record = (open_audit(cfg.output).attrs.get(ATTRIBUTE) or {}).get("efficient_mprt") or {}
    wanted = {"samples": min(spec.samples, n_samples), "n_bins": spec.n_bins, "seed": spec.seed}
    return all(record.get(k) == v for k, v in wanted.items())


def _spray_done(cfg: Any) -> dict[str, Any] | bool | None:
    """None without ``analysis.spray``; the flow's SpRAy result when every class is current; False when
    some class must be (re)computed."""
    analysis = getattr(cfg, "analysis", None)
    if analysis is None or analysis.spray is None:
        return None
    from lrp_tasks.analysis import plan_spray

    try:
        plan = plan_spray(cfg.output, analysis.spray, "refuse")
    except ValueError:  # SprayRequestError:
        return False  # results of another config or snapshot: the flow recomputes them
    if plan.classes:
        return False
    return {"audit": cfg.output, "classes_run": [], "classes_skipped": plan.done, "notes": plan.notes,
            "results": f"{cfg.output}/analysis/spray"}


def _result(preparation: Preparation, shards: int, spray: dict[str, Any] | None) -> dict[str, Any]:
    """What the flow returns for a run that skips every shard (the same keys)."""
    from lrp_tasks.report import write_report
    from lrp_tasks.report.markdown import audit_statistics
    from lrp_tasks.store import open_audit

    cfg = preparation.config
    began = time.perf_counter()
    reader = open_audit(cfg.output)
    html = write_report(reader)
    result: dict[str, Any] = {
        "phase_seconds": {"report": time.perf_counter() - began},
        "audit": cfg.name,
        "store": cfg.output,
        "audit_id": reader.audit_id,
        "shards": shards,
        "shards_skipped": shards,
        "shards_redone": [],
        "samples_explained": 0,
        "samples_per_second": 0.0,
        "samples_per_second_running": 0.0,
        "startup_seconds": 0.0,
        "seconds": 0.0,
        "nodes": [],
        **audit_statistics(reader.summaries),
        "report": html,
        "finished_without_flow": True,
    }
    if spray is not None:
        result["spray"] = spray
    return result
