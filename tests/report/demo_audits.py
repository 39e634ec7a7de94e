"""Demo audits for the report tests, written in-process (no Prefect, no Ray): the committed digits
CNN on the 360 test digits, shard by shard through the real shard task and store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lrp_tasks.audit.prepare import open_shard_explainer, resolve_audit
from lrp_tasks.config import parse_config
from lrp_tasks.store.layout import plan_shards
from tests.digits_audit import digits_audit_config


def write_demo_audit(output: Path, composite: str = "EpsilonPlusFlat", **overrides: Any) -> Path:
    settings: dict[str, Any] = {
        "shard_size": 128,
        "batch_size": 128,
        "storage": {"keep_input": True},
        "composite": composite,
        **overrides,
    }
    cfg = resolve_audit(parse_config(digits_audit_config(output, f"report-{composite}", **settings)))
    ex = open_shard_explainer(cfg, device="cpu")
    for shard_id, start, stop in plan_shards(ex.spec.n_samples, cfg.shard_size):
        ex.explain_shard(shard_id, start, stop)
    return output
