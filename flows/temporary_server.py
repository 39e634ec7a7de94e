"""Prefect's temporary API server for a command-line run, started early and in a session of its own.

Without ``PREFECT_API_URL`` a flow run starts Prefect's temporary server (a uvicorn subprocess) on
first use. ``lrp-audit run`` starts that same server itself, for two reasons:

* **Interrupts.** Prefect starts it in the run's process group, so a Ctrl-C in a terminal (or any
  signal sent to the group) killed the server first; the flow then spent its shutdown retrying
  calls to a dead API. In a session of its own it only stops when the run stops it.
* **Start-up time.** It starts in a background thread (once the config has passed every check)
  while the command imports Prefect's flow engine, Ray and the flow, instead of after them.

Outside the run's process group the server would survive a SIGKILL of the run (or of its group);
on Linux it therefore gets SIGTERM when the thread that started it ends (``PR_SET_PDEATHSIG``), and
that thread lives as long as the run's process.

Prefect keeps one such server per process (``SubprocessASGIServer()``); the flow finds this one
running and uses it, and Prefect's ``atexit`` hook stops it as usual."""

from __future__ import annotations

import ctypes
import functools
import signal
import subprocess
import sys
import threading
import types
from typing import Any

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the starting thread (kept alive as long as the run's
    process) ends, however the run ends."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _server_class() -> type:
    from prefect.server.api import server as server_module

    class OwnSessionServer(server_module.SubprocessASGIServer):
        def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
            # Prefect's own command, with start_new_session=True for its Popen only
            shim = types.SimpleNamespace(**vars(subprocess))
            shim.Popen = functools.partial(subprocess.Popen, start_new_session=True, preexec_fn=_die_with_parent)
            saved = server_module.subprocess
            server_module.subprocess = shim
            try:
                return super()._run_uvicorn_command()
            finally:
                server_module.subprocess = saved

    return OwnSessionServer


def uses_temporary_server() -> bool:
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    return not PREFECT_API_URL.value() and bool(PREFECT_SERVER_EPHEMERAL_ENABLED.value())


class TemporaryServer:
    """Starts the server in a background thread; :meth:`wait` re-raises a start failure."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.server: Any = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._start, name="prefect-temporary-server", daemon=True)

    def _start(self) -> None:
        try:
            from prefect.server.api.server import SubprocessASGIServer

            existing = SubprocessASGIServer._instances.get(None)
            if existing is not None and existing.running:
                self.server = existing
                return
            self.server = _server_class()()
            self.server.start()
        except BaseException as exc:  # reported by wait(), in the main thread
            self.error = exc
        finally:
            self._started.set()
        # the server's parent-death signal is tied to this thread: it ends with the process
        threading.Event().wait()

    def start(self) -> TemporaryServer:
        self._thread.start()
        return self

    def wait(self) -> Any:
        while not self._started.wait(0.1):  # short waits: a signal still interrupts the main thread
            pass
        if self.error is not None:
            raise self.error
        return self.server


def start_in_background() -> TemporaryServer | None:
    """Start the temporary server unless the run talks to a configured Prefect API."""
    if not uses_temporary_server():
        return None
    return TemporaryServer().start()
