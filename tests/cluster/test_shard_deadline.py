"""A stalled worker does not stall the run: a shard past its deadline is retried on another worker, the
stalled worker is replaced, the progress notes name the late shard, and every shard is committed once
(issue 19, item 5)."""

from __future__ import annotations

import os
import re
import signal
from typing import Any

import pytest

from lrp_tasks.audit.prepare import prepare_audit
from lrp_tasks.audit.run import run_shards
from lrp_tasks.cluster.pool import DEADLINE_FACTOR, DEADLINE_FLOOR_S, shard_deadline
from lrp_tasks.config import parse_config
from lrp_tasks.store import lock_store, open_audit
from tests.digits_audit import digits_audit_config

HANG_GUARD_S = 240  # far above the seconds this takes; only there so a regression fails instead of hanging


def test_the_deadline_is_the_configured_one_else_a_factor_of_the_median_with_a_floor() -> None:
    assert shard_deadline(3.0, []) == 3.0
    assert shard_deadline(3.0, [100.0, 200.0]) == 3.0  # a configured deadline is used as written
    assert shard_deadline(None, []) is None  # no shard finished yet: nothing to judge "late" by
    assert shard_deadline(None, [1.0, 2.0, 30.0]) == DEADLINE_FLOOR_S  # 10 x 2 s is below the floor
    assert shard_deadline(None, [10.0, 20.0, 12.0]) == DEADLINE_FACTOR * 12.0


def _alarm(*_: Any) -> None:
    raise TimeoutError("run_shards did not end: a stopped worker held the run")


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


@pytest.mark.integration
def test_a_stopped_worker_is_replaced_and_its_shard_committed_once_elsewhere(tmp_path) -> None:
    out = tmp_path / "audit"
    cfg = parse_config(
        digits_audit_config(
            out,
            "deadline",
            shard_size=30,
            batch_size=30,
            ray={"workers": 2, "cpus_per_worker": 1, "shard_deadline_s": 3},
        )
    )
    notes: list[str] = []
    committed: list[int] = []
    stopped: list[int] = []

    def on_done(outcome: Any, raw: dict[str, Any]) -> None:
        committed.append(outcome.shard_id)
        if not stopped:  # the worker that committed first already holds its next shard: freeze it
            pid = int(outcome.worker.split(":")[1])
            stopped.append(pid)
            os.kill(pid, signal.SIGSTOP)

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_GUARD_S)
    try:
        with lock_store(str(out)) as lock:
            preparation = prepare_audit(cfg, store_mode="resume")
            store = preparation.store
            pending = store.pending_shards()
            store.close()
            outcomes = run_shards(preparation.audit, pending, on_done=on_done, on_note=notes.append, lease=lock.token)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        for pid in stopped:  # never let a stopped process outlive the test
            _signal(pid, signal.SIGKILL)
    assert stopped, "no worker was stopped: the test proves nothing"
    late = [int(m.group(1)) for n in notes if (m := re.search(r"shard (\d+) is late", n))]
    assert late, notes
    assert all("replacing worker" in n for n in notes if "is late" in n), notes
    shard_ids = [s[0] for s in pending]
    # every shard reported once, each explained and committed by the run (none skipped, none twice)
    assert sorted(committed) == shard_ids
    assert sorted(o["shard_id"] for o in outcomes) == shard_ids
    assert all(o["explained"] for o in outcomes)
    assert set(late) <= set(shard_ids)
    assert open_audit(str(out)).committed_shards == set(shard_ids)
