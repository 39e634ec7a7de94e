"""Ends a private Ray's processes and removes its session directory when the run that started it is
gone, however it went (even ``kill -9``, which the run cannot handle).

The run starts ``python -m lrp_tasks.cluster.reaper DIR`` in a session of its own with a pipe on its
stdin that only the run holds. The pipe reaches end-of-file when the run closes it (a normal end,
after ``ray.shutdown()``) or when the kernel closes it (the run died). Then every process that carries
the run's session marker (:data:`SESSION_ENV` in its environment, inherited by Ray's GCS, raylet,
agents and workers) or names ``DIR`` on its command line gets SIGTERM, SIGKILL after
:data:`GRACE_SECONDS`, and ``DIR`` (Ray's ``_temp_dir``, private to the run) is removed.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time

SESSION_ENV = "LRP_AUDIT_RAY_SESSION"
GRACE_SECONDS = 1.0


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def session_processes(temp_dir: str) -> list[int]:
    """Pids of live processes of the private Ray session ``temp_dir`` (this process excluded)."""
    marker = f"{SESSION_ENV}={temp_dir}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        if marker in _read(f"/proc/{entry}/environ").split(b"\0") or temp_dir.encode() in _read(
            f"/proc/{entry}/cmdline"
        ):
            stat = _read(f"/proc/{entry}/stat")
            if stat and stat.rsplit(b")", 1)[-1].split()[:1] != [b"Z"]:
                found.append(int(entry))
    return found


def reap(temp_dir: str, grace: float = GRACE_SECONDS) -> list[int]:
    """SIGTERM, then SIGKILL, every process of the session; remove ``temp_dir``. Returns the pids."""
    pids = session_processes(temp_dir)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and session_processes(temp_dir):
        time.sleep(0.1)
    for pid in session_processes(temp_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(temp_dir, ignore_errors=True)  # never follows a symlink inside
    return pids


def main(argv: list[str]) -> int:
    temp_dir = os.path.abspath(argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C of the run's group must not stop the reaper
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while sys.stdin.buffer.read(65536):
        pass  # returns b"" when the run closed the pipe or died
    reap(temp_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
