"""``lrp-audit run`` as a process tree: interrupted anywhere it leaves nothing running; its private
Ray listens on loopback only; its stderr is plain lines (no redraws) when not a terminal."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest
import yaml

from flows.progress import format_rate
from tests.digits_audit import digits_audit_config
from tests.flows.process_tree import STACK_DUMP_SIGNS, WatchedRun, cmdline, is_loopback, listening_sockets, marked

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc (Linux)"),
]


def _config(tmp_path: Path) -> Path:
    cfg = digits_audit_config(
        tmp_path / "audit", "lifecycle", shard_size=64, batch_size=64, ray={"workers": 2, "cpus_per_worker": 1}
    )
    path = tmp_path / "lifecycle.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"PREFECT_HOME": str(tmp_path / "prefect-home"), **extra}


def _server_up(run: WatchedRun) -> bool:
    return any("uvicorn" in cmdline(pid) for pid, _ in marked(run.marker))


def _store_exists(run: WatchedRun, tmp_path: Path) -> bool:
    return (tmp_path / "audit" / "relevance.zarr").exists()


def _shard_committed(run: WatchedRun, tmp_path: Path) -> bool:
    return any((tmp_path / "audit" / "summaries").glob("part-*.parquet"))


POINTS = {
    # the temporary Prefect server is up, the flow has not reached the store yet
    "server": lambda run, tmp: _server_up(run) and not _store_exists(run, tmp),
    # inside the prepare-store task (the store exists, the task is held there by a test hook)
    "store": _store_exists,
    # Ray and its workers are running shards
    "shards": _shard_committed,
}


@pytest.mark.parametrize(
    ("point", "signum", "group"),
    [
        ("server", signal.SIGTERM, False),
        ("store", signal.SIGTERM, False),
        ("shards", signal.SIGTERM, False),
        ("shards", signal.SIGINT, True),  # Ctrl-C in a terminal: the whole process group
        # SIGKILL cannot be handled: the temporary server (in a session of its own) must still go
        ("shards", signal.SIGKILL, True),
        # kill -9 of the CLI alone: Ray's agents and workers are not in its reach (issue 19, item 4)
        ("server", signal.SIGKILL, False),
        ("store", signal.SIGKILL, False),
        ("shards", signal.SIGKILL, False),
    ],
)
def test_a_signal_anywhere_stops_every_process_of_the_run(tmp_path, point, signum, group):
    env = _env(tmp_path, LRP_AUDIT_TEST_SHARD_SECONDS="2", LRP_AUDIT_TEST_PREPARE_SECONDS="600")
    if point != "store":
        env["LRP_AUDIT_TEST_PREPARE_SECONDS"] = "0"
    run = WatchedRun(_config(tmp_path), env, tmp_path)
    try:
        run.wait_for(lambda: POINTS[point](run, tmp_path))
        run.wait_for(lambda: len(run.seen) >= 2)  # the watcher (every 0.1 s) has recorded the run's children
        before = {pid for pid, _ in run.seen}
        already = len(run.stderr())  # judge only what the run printed once interrupted
        run.send(signum, group=group)
        rc = run.finish()
        left = run.survivors()
    finally:
        run.kill_all()
    err = run.stderr()
    assert not left, f"still running after the run exited: {[(pid, cmdline(pid)) for pid, _ in left]}\n{err[-3000:]}"
    if signum == signal.SIGKILL:
        assert rc == -signal.SIGKILL
    else:
        assert rc == 128 + signum, err[-3000:]
        assert f"interrupted by {signal.Signals(signum).name}" in err
    assert not [sign for sign in STACK_DUMP_SIGNS if sign in err[already:]], err[already:][-3000:]
    assert len(before) >= 2, "the run had started no process yet: the test proves nothing"
    ray_dirs = [d for pid in before for d in Path("/tmp").glob(f"lrp-audit-ray-{pid}-*")]
    assert not ray_dirs, f"the private Ray session directory was left: {ray_dirs}"
    if point == "shards":
        assert any("raylet" in cmd for cmd in (cmdline(p) for p in before)) or len(before) > 4


def test_private_ray_listens_on_loopback_only_and_output_is_plain_lines(tmp_path):
    # with the dashboard asked for (LRP_AUDIT_RAY_DASHBOARD, what --ray-dashboard sets): it too stays on loopback
    env = _env(tmp_path, LRP_AUDIT_TEST_SHARD_SECONDS="2", LRP_AUDIT_RAY_DASHBOARD="1")
    run = WatchedRun(_config(tmp_path), env, tmp_path)
    try:
        # every Ray process (GCS, raylet, agents, both workers) is up once a shard is committed
        run.wait_for(lambda: _shard_committed(run, tmp_path))
        pids = {pid for pid, _ in marked(run.marker)}
        sockets = listening_sockets(pids)
        owners = {pid: cmdline(pid) for pid, _ in sockets}
        rc = run.finish()
    finally:
        run.kill_all()
    err = run.stderr()
    assert rc == 0, err[-3000:]
    assert len(sockets) >= 4 and any("raylet" in o or "gcs_server" in o for o in owners.values()), owners
    assert any("dashboard/dashboard.py" in o for o in owners.values()), owners
    exposed = [(pid, addr, owners[pid]) for pid, addr in sockets if not is_loopback(addr)]
    assert not exposed, f"listening beyond loopback: {exposed}"
    # no token-authentication warning, no progress redraws in a file, rates with and without start-up
    assert "Token authentication" not in err and "RAY_AUTH_MODE" not in err, err[-3000:]
    assert "\r" not in err
    assert "ETA" in err and "elapsed" in err
    assert "samples/s in the explain step" in err and "once running" in err
    assert "SOCKS" not in err
    result = json.loads(run.stdout()[run.stdout().index("{") :])
    assert result["samples_explained"] == 360
    assert 0 < result["samples_per_second"] <= result["samples_per_second_running"]
    # what a pipe hears, in order: what is prepared, checks passed, progress, the report, the rates
    ours = [line for line in err.splitlines() if line.startswith("lrp-audit: ")]
    assert ours[0].startswith("lrp-audit: preparing ") and ours[1].startswith("lrp-audit: checked in ")
    report = ours.index("lrp-audit: writing the report (statistics, heatmaps, report.html)")
    assert any(" shards (" in line for line in ours[2:report])
    assert ours[report + 1].startswith("lrp-audit: report written")
    closing = ours[-1]
    assert f"{format_rate(result['samples_per_second'])} samples/s in the explain step" in closing
    assert f"{format_rate(result['samples_per_second_running'])} samples/s once running" in closing
    # where the fixed start cost goes (benchmarks/pipeline.py prints these)
    phases = result["phase_seconds"]
    for key in (
        "prepare_store",
        "explain",
        "report",
        "spray",
        "ray_start_and_model_loads",
        "command_before_flow",
        "waiting_for_prefect_server",
        "prefect_flow_engine",
        "command_total",
    ):
        assert phases[key] >= 0, key
    assert phases["command_total"] >= phases["explain"] >= phases["ray_start_and_model_loads"]
