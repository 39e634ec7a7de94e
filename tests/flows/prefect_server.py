"""Real Prefect processes for integration tests: a server on a loopback port, workers, CLI calls.

Everything runs in subprocesses with one environment built by :func:`prefect_env` (a private
PREFECT_HOME, PREFECT_API_URL of the test server, no telemetry), so nothing falls back to a
temporary server of its own or to the developer's profile. Each long-running process gets its own
session (process group) and a log file; :meth:`Background.stop` ends the whole group.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

VENV_BIN = Path(sys.executable).parent
PREFECT = str(VENV_BIN / "prefect")

# Variables of the caller's shell that would point the processes at another Prefect or Ray.
_FOREIGN = ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_API_AUTH_STRING", "PREFECT_PROFILE",
            "PREFECT_PROFILES_PATH", "RAY_ADDRESS")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prefect_env(home: Path, api_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN}
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
        PREFECT_HOME=str(home),
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_UI_ENABLED="false",
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text[-lines:])


class Background:
    """A long-running subprocess in its own session, output to ``log``."""

    def __init__(self, name: str, args: Sequence[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.name, self.log = name, log
        self._out = open(log, "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            list(args), env=env, cwd=cwd, stdout=self._out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM to the process group, SIGKILL what is left after ``grace`` seconds."""
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        try:  # the leader may be gone while children of its group live on
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._out.close()

    def report(self, lines: int = 60) -> str:
        state = "running" if self.alive() else f"exited with {self.proc.returncode}"
        return f"----- {self.name} ({state}), last lines of {self.log} -----\n{tail(self.log, lines)}"


def start_server(env: dict[str, str], port: int, cwd: Path, log: Path, timeout: float = 120.0) -> Background:
    """``prefect server start`` on 127.0.0.1:port; returns once ``/api/health`` answers."""
    server = Background("prefect server", [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                        env, cwd, log)
    url = f"http://127.0.0.1:{port}/api/health"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"the Prefect server exited early\n{server.report()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"the Prefect server did not answer {url} within {timeout:.0f} s\n{server.report()}")


def run_cli(args: Sequence[str], env: dict[str, str], cwd: Path, timeout: float = 120.0) -> str:
    """One ``prefect …`` command; its output, or AssertionError with the output if it failed."""
    done = subprocess.run([PREFECT, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise AssertionError(f"`prefect {' '.join(args)}` exited with {done.returncode}:\n{output}")
    return output


def kill_processes_mentioning(marker: str) -> list[int]:
    """SIGKILL this user's processes whose command line contains ``marker`` (e.g. a private
    RAY_TMPDIR that every process of one local Ray names in its arguments). Linux (/proc) only."""
    killed = []
    uid = os.getuid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
            except ProcessLookupError:
                pass
    return killed
