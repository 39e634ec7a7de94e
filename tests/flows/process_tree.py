"""Watching the processes of one ``lrp-audit run`` from the outside, through /proc (Linux).

A run is started with a unique marker variable in its environment; every process it starts (the
temporary Prefect server, Ray's GCS, raylet, agents and workers) inherits it, so the run's processes
are found even after they are re-parented."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

MARKER = "LRP_AUDIT_TEST_RUN_MARKER"
ROOT = Path(__file__).resolve().parents[2]
STACK_DUMP_SIGNS = ("*** SIGTERM received", "*** SIGINT received", "PC: @", "*** Aborted at", "StackTrace")


def _environ(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []


def _start_time(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:160]
    except OSError:
        return "?"


def marked(marker: str) -> set[tuple[int, int]]:
    """(pid, start time) of every live (non-zombie) process carrying ``MARKER=marker``."""
    want = f"{MARKER}={marker}".encode()
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and want in _environ(int(entry)):
            started = _start_time(int(entry))
            if started is not None and _state(int(entry)) not in (None, "Z"):
                found.add((int(entry), started))
    return found


def alive(procs: set[tuple[int, int]]) -> set[tuple[int, int]]:
    """Those of ``procs`` still running (the same pid with the same start time, not a zombie)."""
    return {(pid, t) for pid, t in procs if _start_time(pid) == t and _state(pid) not in (None, "Z")}


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    except OSError:
        pass
    return inodes


def _decode_address(hex_addr: str) -> str:
    ip_hex, port_hex = hex_addr.split(":")
    raw = bytes.fromhex(ip_hex)
    if len(raw) == 4:
        ip = ".".join(str(b) for b in raw[::-1])
    else:  # four little-endian 32-bit words
        address = ipaddress.IPv6Address(b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
        ip = f"::ffff:{address.ipv4_mapped}" if address.ipv4_mapped else str(address)
    return f"{ip}:{int(port_hex, 16)}"


def listening_sockets(pids: set[int]) -> list[tuple[int, str]]:
    """(pid, "ip:port") of every listening TCP socket (IPv4 and IPv6) the processes hold."""
    owner = {inode: pid for pid in pids for inode in _socket_inodes(pid)}
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] == "0A" and int(cols[9]) in owner:  # 0A = LISTEN
                found.append((owner[int(cols[9])], _decode_address(cols[1])))
    return found


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1, or an IPv4-mapped 127.x address (``::ffff:127.0.0.1``)."""
    ip = ipaddress.ip_address(address.rsplit(":", 1)[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


@dataclass
class WatchedRun:
    """``lrp-audit run`` in a session of its own; the tree's processes are recorded while it runs."""

    config: Path
    env: dict[str, str]
    workdir: Path
    marker: str = field(default_factory=lambda: uuid.uuid4().hex)
    seen: set[tuple[int, int]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.stdout_path = self.workdir / "stdout.txt"
        self.stderr_path = self.workdir / "stderr.txt"
        env = {**os.environ, **self.env, MARKER: self.marker}
        # files, not pipes: an orphan holding a pipe open would hang the test instead of failing it
        self._out, self._err = open(self.stdout_path, "w"), open(self.stderr_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flows", "run", str(self.config)],
            cwd=ROOT,
            env=env,
            stdout=self._out,
            stderr=self._err,
            start_new_session=True,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.seen |= marked(self.marker)
            time.sleep(0.1)

    def wait_for(self, condition, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                raise AssertionError(f"the run ended (rc {self.proc.returncode}) first:\n{self.stderr()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not reached in {timeout} s:\n{self.stderr()[-3000:]}")
            time.sleep(0.1)

    def send(self, signum: int, group: bool = False) -> None:
        if group:  # what a terminal's Ctrl-C or a service manager does: the whole process group
            os.killpg(self.proc.pid, signum)
        else:
            self.proc.send_signal(signum)

    def finish(self, timeout: float = 240.0) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        finally:
            self._stop.set()
            self._thread.join()
            self._out.close()
            self._err.close()
        return rc

    def survivors(self, settle: float = 5.0) -> set[tuple[int, int]]:
        """Processes of the run still alive after it exited (given ``settle`` s to finish exiting)."""
        deadline = time.monotonic() + settle
        while True:
            left = alive(self.seen) | marked(self.marker)
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.2)

    def kill_all(self) -> None:
        """Test clean-up: SIGKILL whatever of this run is left."""
        for pid, _ in alive(self.seen) | marked(self.marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def stderr(self) -> str:
        if not self._err.closed:
            self._err.flush()
        return self.stderr_path.read_text(errors="replace")

    def stdout(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return self.stdout_path.read_text(errors="replace")
