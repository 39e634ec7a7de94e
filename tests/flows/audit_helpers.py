"""Small digits audits for the flow tests: configs in tmp dirs, stores compared content-wise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tests.digits_audit import digits_audit_config

ROOT = Path(__file__).resolve().parents[2]


def write_config(tmp: Path, name: str = "t", **overrides: Any) -> Path:
    settings: dict[str, Any] = {
        "shard_size": 64,
        "batch_size": 64,
        "ray": {"workers": 2, "cpus_per_worker": 1},
        "retries": 2,
        **overrides,
    }
    cfg = digits_audit_config(tmp / "audit", name, **settings)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300, **popen: Any
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows", *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})}, **popen,
    )


def result_json(stdout: str) -> dict[str, Any]:
    return json.loads(stdout[stdout.index("{") :])


def store_content(path: Path) -> dict[str, Any]:
    """Everything an analyst reads, minus what legitimately differs between runs."""
    from lrp_tasks.store import open_audit

    audit = open_audit(str(path))
    frame = audit.summaries.drop(columns=["audit_id", "explained_at"]).sort_values(["sample_index", "target_rank"])
    return {
        "summaries": frame.reset_index(drop=True),
        "relevance": np.asarray(audit.relevance.values),
        "committed": sorted(audit.committed_shards),
    }
