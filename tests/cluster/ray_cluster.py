"""A private, throwaway Ray cluster of several nodes on this machine, for integration tests.

Each node is one ``ray start`` (no Docker, no ``--block``: it returns once the node is up) with its
own ``--temp-dir`` (a short path under /tmp: Ray's Unix socket paths must stay under ~107 bytes).
The head's GCS and Ray Client ports are free ports picked here, below the kernel's ephemeral range;
every other port (node/object manager, dashboard and runtime-env agents, metrics, workers) is 0, so
each process binds one the OS gives it and reports it. Two nodes on one host and other Ray clusters
on the same machine therefore do not collide (the defaults would: 6379, 10001, 52365 are fixed).

``--node-ip-address=127.0.0.1`` is passed, but Ray 2.60 replaces a loopback address by the host's
routable IP and its servers listen on all interfaces: the cluster is reachable at
``127.0.0.1:<port>`` and at ``<host ip>:<port>``, which is why it uses token authentication.

Authentication: every process gets ``RAY_AUTH_MODE=token`` and a fresh random ``RAY_AUTH_TOKEN``
(the variable wins over ``~/.ray/auth_token``), so the cluster neither depends on nor writes the
developer's home, and whoever reaches its ports without the token is refused.

Teardown never uses ``ray stop``: it takes no cluster or temp-dir argument and stops every Ray
process on the machine (other tests', other people's). Each ``ray start`` runs in a new session,
and the daemons it spawns (GCS, raylet, agents, monitors) keep its process group; Ray workers do
not (see ``processes``) and are found by a marker variable in their environment. Teardown sends
SIGTERM to those processes, then SIGKILL to what is left after a short grace period (GCS and the
autoscaler monitor ignore SIGTERM for a long while; ``ray stop --force`` would SIGKILL at once)."""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VENV_BIN = Path(sys.executable).parent
RAY = str(VENV_BIN / "ray")
MARKER = "LRP_TEST_RAY_CLUSTER"
START_TIMEOUT = 120
NODES_TIMEOUT = 90


def free_ports(n: int) -> list[int]:
    """n distinct TCP ports that are free on all interfaces (Ray binds 0.0.0.0), drawn below the
    kernel's ephemeral range: a port from that range could be taken, between this check and Ray's
    bind, by any process's outgoing connection."""
    try:
        low_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low_ephemeral = 32768
    rng = random.SystemRandom()
    ports: list[int] = []
    while len(ports) < n:
        port = rng.randrange(20000, low_ephemeral)
        if port in ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("", port))
            except OSError:
                continue
        ports.append(port)
    return ports


def cluster_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment, minus anything that would point Ray elsewhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "PREFECT_"))}
    env.update(
        {
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
            # inherited by every process of the cluster (raylets pass their environment on to
            # workers): how teardown recognises them, whatever process group or title they have
            MARKER: secrets.token_hex(8),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
    )
    env.update(extra or {})
    return env


@dataclass
class Node:
    name: str
    temp_dir: Path
    start: subprocess.Popen
    pgid: int
    stdout: Path


@dataclass
class LocalRayCluster:
    """``with LocalRayCluster(nodes=2) as c:`` → ``c.address`` (``127.0.0.1:PORT``), ``c.env``."""

    nodes_wanted: int = 2
    cpus_per_node: int = 1
    object_store_bytes: int = 100 * 1024 * 1024
    env: dict[str, str] = field(default_factory=cluster_env)
    nodes: list[Node] = field(default_factory=list)
    gcs_port: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> LocalRayCluster:
        try:
            self.gcs_port, client_port = free_ports(2)
            self._start_node("head", ["--head", f"--port={self.gcs_port}", f"--ray-client-server-port={client_port}"])
            for i in range(1, self.nodes_wanted):
                self._start_node(f"worker{i}", [f"--address={self.address}"])
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _start_node(self, name: str, role_args: list[str]) -> None:
        temp_dir = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))
        # port 0: the raylet, object manager, agents and workers bind a port of their own choosing
        # and report it (no race with other processes); only the GCS and Ray Client ports of the
        # head are chosen here, because clients need them up front
        args = [
            RAY,
            "start",
            *role_args,
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={self.cpus_per_node}",
            "--num-gpus=0",
            f"--object-store-memory={self.object_store_bytes}",
            f"--temp-dir={temp_dir}",
            "--node-manager-port=0",
            "--object-manager-port=0",
            "--dashboard-agent-listen-port=0",
            "--dashboard-agent-grpc-port=0",
            "--runtime-env-agent-port=0",
            "--metrics-export-port=0",
            "--min-worker-port=0",
            "--max-worker-port=0",
            "--disable-usage-stats",
            "--log-style=record",
            "--log-color=false",
        ]
        if "--head" in role_args:
            args.append("--include-dashboard=false")
        stdout = temp_dir / f"ray-start-{name}.log"
        with open(stdout, "wb") as sink:
            proc = subprocess.Popen(
                args,
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        node = Node(name, temp_dir, proc, proc.pid, stdout)
        self.nodes.append(node)
        try:
            rc = proc.wait(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"`ray start` for {name} did not return in {START_TIMEOUT} s") from exc
        if rc != 0:
            raise RuntimeError(f"`ray start` for {name} failed (exit {rc}):\n{stdout.read_text()[-4000:]}")

    def stop(self, grace: float = 5.0) -> list[int]:
        """Stop exactly this cluster's processes; returns the pids that needed SIGKILL."""
        for pid in self.processes():
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while (alive := self.processes()) and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in alive:
            _signal(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.2)
        for node in self.nodes:
            if node.start.poll() is None:
                node.start.kill()
                node.start.wait(timeout=10)
        return alive

    def cleanup_dirs(self) -> None:
        for node in self.nodes:
            shutil.rmtree(node.temp_dir, ignore_errors=True)

    def processes(self) -> list[int]:
        """Pids of this cluster's live processes (Linux /proc): members of the nodes' process groups
        and processes whose environment carries this cluster's marker. Ray workers need the
        second: the raylet puts each in its own process group and they retitle themselves
        (``ray::ShardWorker``), so neither the group nor the command line finds them."""
        pgids = {n.pgid for n in self.nodes}
        marker = f"{MARKER}={self.env[MARKER]}".encode()
        me = os.getpid()
        found: list[int] = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == me:
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                # the fields after the parenthesised command name: state ppid pgrp ...
                state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
                if state in ("Z", "X"):
                    continue
                mine = int(pgrp) in pgids or marker in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            except (OSError, ValueError):
                continue
            if mine:
                found.append(int(entry))
        return found

    # -- inspection ------------------------------------------------------------------------------
    def alive_nodes(self, want: int | None = None, timeout: float = NODES_TIMEOUT) -> list[dict[str, Any]]:
        """``ray.nodes()`` of the alive nodes, asked from a throwaway driver process (this process
        never imports Ray); with ``want``, waits until that many nodes are alive."""
        script = (
            "import json, logging, sys, time, ray\n"
            "ray.init(address=sys.argv[1], logging_level=logging.WARNING, log_to_driver=False)\n"
            "want, deadline = int(sys.argv[2]), time.monotonic() + float(sys.argv[3])\n"
            "while True:\n"
            "    alive = [n for n in ray.nodes() if n['Alive']]\n"
            "    if len(alive) >= want or time.monotonic() > deadline: break\n"
            "    time.sleep(1)\n"
            "print('NODES=' + json.dumps([{k: n[k] for k in ('NodeID', 'NodeManagerAddress', 'NodeManagerPort',"
            " 'Resources')} for n in alive]))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", script, self.address, str(want or 0), str(timeout)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout + 90,
            check=False,
        )
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("NODES=")]
        if out.returncode != 0 or not lines:
            raise RuntimeError(
                f"listing nodes failed (exit {out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
            )
        return json.loads(lines[-1][len("NODES=") :])

    def log_tails(self, lines: int = 30) -> str:
        """The last lines of each node's `ray start` output and main Ray logs (for failure reports)."""
        parts: list[str] = []
        patterns = (
            "ray-start-*.log",
            "session_latest/logs/gcs_server.*",
            "session_latest/logs/raylet.*",
            "session_latest/logs/dashboard_agent.*",
            "session_latest/logs/runtime_env_agent.*",
            "session_latest/logs/worker-*.err",
            "session_latest/logs/python-core-driver-*.log",
        )
        for node in self.nodes:
            for pattern in patterns:
                for path in sorted(node.temp_dir.glob(pattern)):
                    try:
                        text = path.read_text(errors="replace").splitlines()
                    except OSError:
                        continue
                    if text:
                        parts.append(f"--- {node.name}: {path} (last {lines} lines)\n" + "\n".join(text[-lines:]))
        return "\n".join(parts)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
