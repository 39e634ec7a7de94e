"""The ``audit/nightly-digits`` deployment of prefect.yaml, end to end on real Prefect processes.

A Prefect server on a free loopback port (private PREFECT_HOME), the ``lrp-audit`` process work pool,
``prefect deploy`` from the repository's prefect.yaml, the cron schedule checked (the server's
scheduler must create runs at 02:00 UTC) then paused, a process worker started OUTSIDE the
repository (so the deployment's pull step must move the run into the project directory), and a
run triggered with ``prefect deployment run`` that fills the typed ``config`` parameter (the UI
form) while the deployment's default ``config_path`` stays set: the config must win, writing the
audit of the 360 test digits into tmp_path. The flow run must complete and the store hold every
sample. The stored parameter schema must describe every field (the UI form's help texts).

Runtime on 2 shared cores: about a minute (server start, deploy, flow subprocess with a
private local Ray). On failure the server's, the worker's and the flow run's logs are printed.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from lrp_tasks.config import parse_config
from lrp_tasks.store import open_audit, plan_shards

from .prefect_server import (
    PREFECT,
    Background,
    free_port,
    kill_processes_mentioning,
    prefect_env,
    run_cli,
    start_server,
)

ROOT = Path(__file__).resolve().parents[2]
POOL = "lrp-audit"
DEPLOYMENT = "audit/nightly-digits"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
RUN_TIMEOUT = 420.0  # worker poll + flow subprocess + local Ray + 360 samples; ~60 s when idle


def _form_config(output: Path) -> dict[str, Any]:
    """conf/demo.yaml as the UI form would send it, but the 360 test digits, one Ray worker and the
    store in tmp_path. A form has no file: its relative weights path resolves against the run's
    working directory, so it is only found if the pull step moved the run to the project root."""
    cfg = yaml.safe_load((ROOT / "conf" / "demo.yaml").read_text())
    cfg["name"] = "nightly-digits-test"
    cfg["output"] = str(output)
    cfg["dataset"]["split"] = "test"
    cfg["ray"].update(address=None, workers=1)
    cfg["model"]["weights"] = "models/digits_cnn.safetensors"  # relative to the project directory
    return parse_config(cfg).model_dump(mode="json")  # every field filled in, as a form sends it


def _api(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    response = client.request(method, path, **kwargs)
    assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text[:2000]}"
    return response.json() if response.content else None


def _scheduled_runs(client: httpx.Client, deployment_id: str) -> list[dict[str, Any]]:
    body = {"deployments": {"id": {"any_": [deployment_id]}},
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}, "limit": 200}
    return _api(client, "POST", "/flow_runs/filter", json=body)


def _flow_run_logs(client: httpx.Client, flow_run_id: str, lines: int = 80) -> str:
    try:
        logs = _api(client, "POST", "/logs/filter",
                    json={"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "sort": "TIMESTAMP_ASC", "limit": 200})
    except Exception as exc:  # the server may be the thing that broke
        return f"(could not read the flow run's logs: {exc})"
    return "\n".join(f"{entry['timestamp']} {entry['level']:>2} {entry['message']}" for entry in logs[-lines:])


def _wait(what: str, condition: Any, timeout: float, interval: float = 1.0, alive: tuple[Background, ...] = ()) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        for proc in alive:
            assert proc.alive(), f"{proc.name} exited while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(interval)


@pytest.mark.integration
def test_nightly_digits_deployment_runs_through_a_worker(tmp_path: Path) -> None:
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    # A private Ray temp root, short enough for Ray's AF_UNIX socket paths, that every process of
    # the run's local Ray names on its command line: how leftovers are found and stopped below.
    ray_tmp = Path(tempfile.mkdtemp(prefix="lrpray-"))
    env = prefect_env(
        tmp_path / "prefect-home", api_url,
        LRP_AUDIT_HOME=str(ROOT),  # the pull step's project directory (default /app, the image)
        LRP_AUDIT_ALLOWED_ROOTS=str(tmp_path),  # the form's output lies outside the project: allowed here
        RAY_TMPDIR=str(ray_tmp),
        PREFECT_WORKER_QUERY_SECONDS="2",
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5",
    )
    output = tmp_path / "audit"
    cfg = _form_config(output)
    worker_dir = tmp_path / "worker-cwd"  # not the repository: the pull step has to find it
    worker_dir.mkdir()

    procs: list[Background] = []
    client = httpx.Client(base_url=api_url, timeout=30)
    flow_run_id = ""
    try:
        server = start_server(env, port, tmp_path, tmp_path / "server.log")
        procs.append(server)
        run_cli(["work-pool", "create", POOL, "--type", "process"], env, tmp_path)
        deployed = run_cli(["--no-prompt", "deploy", "--name", "nightly-digits"], env, ROOT, timeout=300)

        # -- the deployment as registered from prefect.yaml
        deployment = _api(client, "GET", f"/deployments/name/{DEPLOYMENT}")
        assert deployment["entrypoint"] == "flows/audit.py:audit", deployed
        assert deployment["work_pool_name"] == POOL
        assert deployment["parameters"] == {"config_path": "conf/demo.yaml", "compare_with": "previous"}
        # the UI form explains every field of the config (pydantic descriptions in the schema)
        definitions = deployment["parameter_openapi_schema"]["definitions"]
        undescribed = [f"{name}.{field}" for name, d in definitions.items()
                       for field, prop in d.get("properties", {}).items() if not prop.get("description")]
        assert undescribed == [] and "AuditConfig" in definitions
        assert deployment["global_concurrency_limit"]["limit"] == 1  # one nightly audit at a time
        assert [next(iter(step)) for step in deployment["pull_steps"]] == [
            "prefect.deployments.steps.run_shell_script", "prefect.deployments.steps.set_working_directory"]
        crons = [(s["schedule"].get("cron"), s["schedule"].get("timezone"), s["active"])
                 for s in deployment["schedules"]]
        assert crons == [("0 2 * * *", "UTC", True)]

        # -- the scheduler turns the cron schedule into runs at 02:00 UTC ...
        scheduled = _wait("the scheduler to create the nightly runs",
                          lambda: _scheduled_runs(client, deployment["id"]), timeout=120, alive=(server,))
        for run in scheduled:
            start = datetime.fromisoformat(run["expected_start_time"]).astimezone(UTC)
            assert (start.hour, start.minute, start.second) == (2, 0, 0), run["expected_start_time"]
            assert start > datetime.now(UTC)
        # ... and pausing (docs/deployment.md) stops it: none of them may reach the worker started
        # below (their config, conf/demo.yaml, would write into the repository's audits/).
        schedule_id = deployment["schedules"][0]["id"]
        run_cli(["deployment", "schedule", "pause", DEPLOYMENT, schedule_id], env, tmp_path)
        deployment = _api(client, "GET", f"/deployments/name/{DEPLOYMENT}")
        assert [s["active"] for s in deployment["schedules"]] == [False]
        for run in _scheduled_runs(client, deployment["id"]):  # Prefect may leave existing ones
            _api(client, "DELETE", f"/flow_runs/{run['id']}")
        assert _scheduled_runs(client, deployment["id"]) == []

        # -- a worker outside the repository, and a run with the test config
        worker = Background("prefect worker",
                            [PREFECT, "worker", "start", "--pool", POOL, "--type", "process", "--limit", "1"],
                            env, worker_dir, tmp_path / "worker.log")
        procs.append(worker)
        def start_run(config: dict[str, Any]) -> dict[str, Any]:
            nonlocal flow_run_id
            triggered = run_cli(["deployment", "run", DEPLOYMENT, "--params", json.dumps({"config": config})],
                                env, tmp_path)
            found = UUID.search(triggered)
            assert found, f"no flow run id in the output of `prefect deployment run`:\n{triggered}"
            flow_run_id = found.group(0)

            def finished() -> dict[str, Any] | None:
                run = _api(client, "GET", f"/flow_runs/{flow_run_id}")
                return run if run["state"] and run["state"]["type"] in TERMINAL else None

            return _wait(f"flow run {flow_run_id} to finish", finished, RUN_TIMEOUT, interval=2,
                         alive=(server, worker))

        def run_once() -> str:
            run = start_run(cfg)
            assert run["state"]["type"] == "COMPLETED", (
                f"flow run ended {run['state']['type']}: {run['state']['message']}")
            # the deployment's default config_path is still set: the typed config won over it
            assert run["parameters"]["config"]["name"] == cfg["name"]
            assert run["parameters"]["config_path"] == "conf/demo.yaml"
            assert run["parameters"]["compare_with"] == "previous"
            assert run["deployment_id"] == deployment["id"]
            return flow_run_id

        first = run_once()

        # -- the store is complete (compare_with: previous gives every run its own store)
        reader = open_audit(str(output / "runs" / first))
        frame = reader.summaries
        n_samples = 360
        assert sorted(frame.loc[frame["target_rank"] == 0, "sample_index"]) == list(range(n_samples))
        assert len(frame) == n_samples  # target: predicted, one row per sample
        assert reader.committed_shards == {s for s, _, _ in plan_shards(n_samples, cfg["shard_size"])}
        assert not (ROOT / "audits" / cfg["name"]).exists()
        assert (output / "runs" / first / "report.html").exists()
        assert not (output / "runs" / first / "comparison").exists()  # the first run has nothing to compare with

        # -- the next run compares itself with the last successful one
        second = run_once()
        meta = json.loads((output / "runs" / second / "comparison" / "comparison.json").read_text())
        assert meta["audit_a"]["path"] == str(output / "runs" / first)
        assert meta["summary"]["samples_compared"] == n_samples and meta["summary"]["predictions_changed"] == 0
        assert meta["summary"]["cosine_min"] > 1 - 1e-6  # same model, same data: nothing changed

        # -- issue 24: what the form may not do, through the real deployment: a builder off the
        # allowlist never runs, an output outside the allowed roots is never created
        marker = tmp_path / "marker"
        hostile = {**cfg, "output": str(tmp_path / "hostile"),
                   "model": {"kind": "builder", "builder": "os:system", "kwargs": {"command": f"touch {marker}"}}}
        run = start_run(hostile)
        assert run["state"]["type"] == "FAILED" and "'os:system' is refused" in run["state"]["message"], run["state"]
        assert not marker.exists() and not (tmp_path / "hostile").exists()
        outside = tmp_path.parent / f"{tmp_path.name}-outside"
        run = start_run({**cfg, "output": str(outside)})
        assert run["state"]["type"] == "FAILED" and "outside the allowed roots" in run["state"]["message"], run["state"]
        assert not outside.exists()
    except BaseException:
        print(f"\n===== failure: logs (API {api_url}, flow run {flow_run_id or '-'}) =====")
        for proc in procs:
            print(proc.report())
        if flow_run_id:
            print(f"----- flow run {flow_run_id}, logs stored by the server -----")
            print(_flow_run_logs(client, flow_run_id))
        raise
    finally:
        client.close()
        for proc in reversed(procs):  # worker (and its flow subprocess) first, then the server
            proc.stop()
        kill_processes_mentioning(str(ray_tmp))
        shutil.rmtree(ray_tmp, ignore_errors=True)
