"""flows.interrupt: signals become an exception, and nothing the process started outlives it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from flows.interrupt import RunInterrupted, descendants, interruption_signal, stop_descendants, stop_on_signals

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc")


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _spawn_tree() -> tuple[subprocess.Popen, int]:
    """A child (in a session of its own, like a daemon) with a grandchild that ignores SIGTERM."""
    script = (
        "import signal, subprocess, sys, time\n"
        "g = subprocess.Popen([sys.executable, '-c', "
        "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(600)'],"
        " stdout=subprocess.PIPE)\n"
        "g.stdout.readline()\n"
        "print(g.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True)
    grandchild = int(child.stdout.readline())
    return child, grandchild


@linux
def test_descendants_and_stop_descendants_reach_grandchildren_that_ignore_sigterm():
    child, grandchild = _spawn_tree()
    try:
        assert {child.pid, grandchild} <= set(descendants())
        killed = stop_descendants(timeout=1.0)
        assert grandchild in killed  # it ignored SIGTERM: SIGKILL after the timeout
        child.wait(timeout=30)
        deadline = time.monotonic() + 30
        while not _gone(grandchild) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(grandchild)
    finally:
        for pid in (child.pid, grandchild):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


@linux
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_raises_run_interrupted_and_stops_the_children(signum):
    child, grandchild = _spawn_tree()
    try:
        with pytest.raises(RunInterrupted) as info:
            with stop_on_signals(grace=60, exiting=False):
                os.kill(os.getpid(), signum)
                for _ in range(1000):  # the handler runs at the next bytecode boundary
                    time.sleep(0.01)
        assert info.value.signum == signum and info.value.exit_code == 128 + signum
        child.wait(timeout=30)
        assert _gone(child.pid)
    finally:
        for pid in (child.pid, grandchild):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    # the previous handlers are back
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_handlers_are_restored_and_nothing_is_stopped_without_a_signal():
    before = signal.getsignal(signal.SIGTERM)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with stop_on_signals():
            assert signal.getsignal(signal.SIGTERM) is not before
        assert signal.getsignal(signal.SIGTERM) is before
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()


class TerminationSignal(Exception):  # the shape of prefect.exceptions.TerminationSignal
    def __init__(self, signal: int) -> None:
        self.signal = signal


def test_interruption_is_found_through_wrapping_exceptions():
    def wrapped(inner: BaseException) -> BaseException:
        try:
            try:
                raise inner
            except BaseException as exc:
                raise SystemError("returned a result with an exception set") from exc
        except SystemError as outer:
            return outer

    assert interruption_signal(wrapped(TerminationSignal(signal.SIGTERM))) == signal.SIGTERM
    assert interruption_signal(wrapped(KeyboardInterrupt())) == signal.SIGINT
    assert interruption_signal(wrapped(RunInterrupted(signal.SIGTERM))) == signal.SIGTERM
    assert interruption_signal(wrapped(ValueError("bad"))) is None
