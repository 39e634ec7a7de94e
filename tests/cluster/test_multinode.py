"""The audit on an existing two-node Ray cluster started with ``ray start`` (no Docker).

The cluster (tests/cluster/ray_cluster.py) is a head and one more node on this machine, one CPU
each, token authentication with a throwaway token. The audit runs as ``lrp-audit run`` in a
subprocess (no Ray state in the pytest process) with ``--ray-address 127.0.0.1:<GCS port>``; two
workers of one CPU each only fit as one actor per node, so shards must run on both nodes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lrp_tasks.store import open_audit

from .ray_cluster import LocalRayCluster

REPO_ROOT = Path(__file__).resolve().parents[2]
AUDIT_TIMEOUT = 480
TEST_SAMPLES = 360
SHARD_SIZE = 32

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the cluster helper reads /proc"),
]


def write_config(tmp_path: Path) -> Path:
    cfg = yaml.safe_load((REPO_ROOT / "conf" / "demo.yaml").read_text())
    cfg["name"] = "multinode-test"
    cfg["output"] = str(tmp_path / "audit")
    cfg["model"]["weights"] = str((REPO_ROOT / "conf" / cfg["model"]["weights"]).resolve())  # relative to conf/
    cfg["dataset"]["split"] = "test"
    cfg["shard_size"] = SHARD_SIZE
    # ray.address comes from --ray-address; the rest must fit 2 nodes × 1 CPU exactly
    cfg["ray"] = {"address": None, "workers": 2, "cpus_per_worker": 1, "gpus_per_worker": 0}
    path = tmp_path / "multinode.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def final_json(stdout: str) -> dict:
    """The result the CLI prints last (``json.dumps(result, indent=2)``): from the last '{' line."""
    lines = stdout.splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")
    return json.loads("\n".join(lines[start:]))


def tail(text: str, n: int = 60) -> str:
    return "\n".join(text.splitlines()[-n:])


def test_audit_runs_on_both_nodes_of_an_existing_cluster(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    env_extra = {"PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    cluster = LocalRayCluster(nodes_wanted=2, cpus_per_node=1)
    cluster.env.update(env_extra)
    try:
        with cluster:
            nodes = cluster.alive_nodes(want=2)
            assert len(nodes) == 2, f"the cluster has {len(nodes)} alive node(s): {nodes}"
            node_ids = {n["NodeID"] for n in nodes}

            proc = subprocess.run(
                [
                    str(Path(sys.executable).parent / "lrp-audit"),
                    "run",
                    str(config),
                    "--fresh",
                    "--no-progress",
                    "--ray-address",
                    cluster.address,
                ],
                cwd=REPO_ROOT,
                env=cluster.env,
                capture_output=True,
                text=True,
                timeout=AUDIT_TIMEOUT,
                check=False,
            )
            report = f"exit {proc.returncode}\nstdout:\n{tail(proc.stdout)}\nstderr:\n{tail(proc.stderr)}"
            assert proc.returncode == 0, report
            result = final_json(proc.stdout)

            assert result["shards"] == -(-TEST_SAMPLES // SHARD_SIZE), report
            assert result["shards_skipped"] == 0, report
            assert result["samples_explained"] == TEST_SAMPLES, report
            assert len(result["nodes"]) == 2, f"shards ran on {result['nodes']} only\n{report}"
            # the very nodes of this cluster: the driver attached to it, it did not start a local Ray
            assert set(result["nodes"]) == node_ids, f"{result['nodes']} vs cluster nodes {sorted(node_ids)}"
    except BaseException:
        # the cluster is stopped by now; its logs stay for a look
        print(cluster.log_tails())
        print("Ray temp dirs kept:", *(str(n.temp_dir) for n in cluster.nodes))
        raise
    cluster.cleanup_dirs()

    leftover = cluster.processes()
    assert not leftover, f"cluster processes survived teardown: {leftover}"

    audit = open_audit(str(tmp_path / "audit"))
    frame = audit.summaries
    assert len(audit.committed_shards) == result["shards"]
    assert len(frame) == TEST_SAMPLES
    assert sorted(frame["sample_index"]) == list(range(TEST_SAMPLES))
    assert frame["sample_index"].is_unique
    assert frame["shard_id"].nunique() == result["shards"]
