"""Stopping a run on SIGTERM or SIGINT: every process the run started stops with it.

A run starts a temporary Prefect API server (a uvicorn subprocess) and, without a cluster address, a
private Ray (GCS, raylet, agents, workers). Python's default SIGTERM kills only the driver: no
``finally`` block and no ``atexit`` hook runs, and those processes are orphaned. ``lrp-audit run``
therefore turns both signals into a :class:`RunInterrupted` exception in the main thread, so the
run unwinds in order (the actor pool's ``ray_session`` shuts Ray down, Prefect's ``atexit`` hook
stops its server), then :func:`stop_descendants` stops whatever is left. A watchdog guarantees the
bound: if unwinding has not finished ``grace`` seconds after the signal, or a second signal
arrives, the remaining descendants are killed and the process exits at once.

Descendants are found through ``/proc`` (Linux, where runs are supported); elsewhere only the
ordered unwinding applies."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

HANDLED = (signal.SIGTERM, signal.SIGINT)
GRACE_SECONDS = 20.0
"""Upper bound on the ordered shutdown before the watchdog kills what is left."""


class RunInterrupted(KeyboardInterrupt):
    """The run received SIGTERM or SIGINT. A KeyboardInterrupt, so ``except Exception`` blocks on the
    way up (Prefect's, the store's) let it through."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(pid: int | None = None, exclude: set[int] | frozenset[int] = frozenset()) -> list[int]:
    """PIDs of every process below ``pid`` (default: this process), parents before children,
    leaving out the subtrees of ``exclude``."""
    if not Path("/proc/self/stat").exists():
        return []
    children = _children_map()
    found: list[int] = []
    stack = [c for c in children.get(pid or os.getpid(), []) if c not in exclude]
    while stack:
        child = stack.pop(0)
        found.append(child)
        stack.extend(c for c in children.get(child, []) if c not in exclude)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; its parent (or init) reaps it


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def stop_descendants(timeout: float = 5.0, exclude: set[int] | frozenset[int] = frozenset()) -> list[int]:
    """SIGTERM every descendant (but the subtrees of ``exclude``), SIGKILL those still running after
    ``timeout`` s; returns the PIDs that had to be killed. The whole tree is listed first, so
    processes whose parent exits first (Ray workers when their raylet stops) are not missed."""
    pids = descendants(exclude=exclude)
    if not pids:
        return []
    _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return []
        time.sleep(0.05)
    stubborn = [p for p in pids + descendants(exclude=exclude) if _alive(p)]
    _signal_all(stubborn, signal.SIGKILL)
    return stubborn


def interruption_signal(exc: BaseException) -> int | None:
    """The signal behind ``exc`` or anything in its cause/context chain: a :class:`RunInterrupted`, a
    KeyboardInterrupt (SIGINT) or Prefect's ``TerminationSignal`` (SIGTERM while a flow runs)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, RunInterrupted):
            return current.signum
        if type(current).__name__ == "TerminationSignal" and isinstance(getattr(current, "signal", None), int):
            return int(current.signal)
        if isinstance(current, KeyboardInterrupt):
            return int(signal.SIGINT)
        current = current.__cause__ or current.__context__
    return None


class _Handler:
    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.received: int | None = None
        self.spared: set[int] = set()
        """Processes left to their owner's own shutdown (Prefect's atexit hook stops its temporary
        server after its log and event workers have flushed to it); the watchdog still bounds it."""
        self._timer: threading.Timer | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:  # a second signal: no more waiting
            self.force()
        self.received = signum
        self.arm()
        raise RunInterrupted(signum)

    def arm(self) -> None:
        """Start the watchdog (once): it bounds the rest of the process's life, exit hooks included."""
        if self._timer is None:
            self._timer = threading.Timer(self.grace, self.force)
            self._timer.daemon = True
            self._timer.start()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def force(self) -> None:
        if os.environ.get("LRP_DEBUG_WATCHDOG"):
            import faulthandler

            faulthandler.dump_traceback(all_threads=True)
        pids = descendants()
        _signal_all(pids, signal.SIGKILL)
        sys.stderr.write(
            f"\nlrp-audit: {signal.Signals(self.received or signal.SIGTERM).name}: the run did not stop within "
            f"{self.grace:g} s; killed {len(pids)} process(es)\n"
        )
        sys.stderr.flush()
        os._exit(128 + (self.received or signal.SIGTERM))


@contextmanager
def stop_on_signals(grace: float = GRACE_SECONDS, exiting: bool = True) -> Iterator[_Handler]:
    """Within the block, SIGTERM/SIGINT raise :class:`RunInterrupted` in the main thread; on the way
    out of an interrupted block every remaining descendant process is stopped. ``exiting``: the
    process exits after an interrupted block (the command line), so the handlers and the watchdog
    stay in place to bound its exit; False restores the previous handlers in any case."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("stop_on_signals() must run in the main thread")
    handler = _Handler(grace)
    previous: dict[int, Any] = {s: signal.signal(s, handler) for s in HANDLED}
    try:
        yield handler
    finally:
        if handler.received is not None:
            # the interruption may have surfaced as any exception (the caller sets `received`
            # then): whatever it was, nothing this run started may outlive it. The watchdog stays
            # armed until the process exits.
            handler.arm()
            stop_descendants(exclude=handler.spared)
        if handler.received is None or not exiting:
            handler.disarm()
            for signum, old in previous.items():
                signal.signal(signum, old)
