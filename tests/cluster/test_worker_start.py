"""A worker whose constructor fails (a path not mounted on its node, an import error) ends the run after
a bounded number of attempts with the constructor's error, instead of being re-probed forever."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from lrp_tasks.audit.prepare import PreparedAudit, resolve_audit
from lrp_tasks.audit.run import run_shards
from lrp_tasks.cluster.pool import START_ATTEMPTS, WorkerStartError
from lrp_tasks.config import parse_config
from lrp_tasks.store import AuditSpec
from tests.digits_audit import digits_audit_config

pytestmark = pytest.mark.integration

HANG_GUARD_S = 240  # far above the seconds this takes; only there so a regression fails instead of hanging


def _alarm(*_: Any) -> None:
    raise TimeoutError("run_shards did not end: a worker that cannot start made it wait forever")


@pytest.mark.parametrize(
    ("model", "workers", "cause"),
    [
        (
            {"kind": "builder", "builder": "lrp_tasks.models.digits:build_digits_cnn", "weights": "/not/mounted.pt"},
            2,
            r"ModelLoadError: weights file not found: /not/mounted\.pt",
        ),
        (
            {"kind": "builder", "builder": "no_such_package.models:build"},
            1,
            r"ModelLoadError: cannot import the builder module 'no_such_package.models'",
        ),
    ],
)
def test_a_worker_that_cannot_start_fails_the_run_with_its_cause(tmp_path, model, workers, cause) -> None:
    cfg = parse_config(
        digits_audit_config(tmp_path / "audit", "start", model=model, ray={"workers": workers, "cpus_per_worker": 1})
    )
    # the model cannot be loaded on the workers' node: a prepared audit as the driver would hand it over
    spec = AuditSpec(n_samples=192, sample_shape=(1, 8, 8), n_classes=10, shard_size=64)
    audit = PreparedAudit(resolve_audit(cfg), spec)
    notes: list[str] = []
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_GUARD_S)
    try:
        with pytest.raises(
            WorkerStartError, match=rf"no worker could start: .*failed {START_ATTEMPTS} time\(s\): {cause}"
        ):
            run_shards(audit, [(0, 0, 64), (1, 64, 128), (2, 128, 192)], on_note=notes.append)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    if workers > 1:
        assert any("given up" in n for n in notes)  # the first worker to go is reported, the run carries on
    assert not (tmp_path / "audit" / "summaries").exists()  # no shard was charged or written
