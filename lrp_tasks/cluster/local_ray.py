"""A private local Ray for one run: loopback only, token-authenticated, no dashboard unless asked.

Ray 2.60's ``ray.init()`` would otherwise

* pick the host's routable IP as node IP even when given ``127.0.0.1``
  (``services.resolve_ip_for_localhost``), and its GCS, raylet, agents and workers then listen on all
  interfaces: a cluster anyone on the network can reach;
* turn token authentication on by itself when ``RAY_AUTH_MODE`` is unset
  (``authentication_token_setup.enable_token_auth_by_default``), log a warning on every run, and
  write a token to ``~/.ray/auth_token`` if there is none.

Here the node IP is 127.0.0.1 for real (Ray's own loopback rule, the one it applies on macOS and
Windows, used for this one ``ray.init`` call), and unless the user set ``RAY_AUTH_MODE`` the session
runs in token mode with a fresh random token held only in this process's environment (inherited
by the Ray processes it starts): other users of the same host cannot reach loopback ports without it,
nothing is written to the home directory, and Ray has nothing to warn about. The environment is
restored when the session ends. Clusters joined by address are not touched: they keep Ray's
settings (docs/scaling.md says how to secure one)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ray

LOOPBACK = "127.0.0.1"
DASHBOARD_ENV = "LRP_AUDIT_RAY_DASHBOARD"
"""Set to 1 to start Ray's dashboard with a private local Ray (bound to 127.0.0.1)."""
AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")


def _refresh_ray_auth() -> None:
    """Ray caches the auth mode (RayConfig) and the token in this process: re-read them."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


@contextmanager
def private_auth() -> Iterator[str | None]:
    """Token mode with a fresh per-session token, unless ``RAY_AUTH_MODE`` is set (then as set).
    Yields the mode in force."""
    if os.environ.get("RAY_AUTH_MODE") is not None:
        yield os.environ["RAY_AUTH_MODE"]
        return
    saved = {k: os.environ.get(k) for k in AUTH_VARS}
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    _refresh_ray_auth()
    try:
        yield "token"
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _refresh_ray_auth()


@contextmanager
def keep_signal_handler() -> Iterator[None]:
    """``ray.init`` replaces the SIGTERM handler with ``sys.exit``; a Python handler that was in place
    (the CLI's, which stops the whole run in order) is put back."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if main and callable(previous):
            signal.signal(signal.SIGTERM, previous)


@contextmanager
def private_session_dir() -> Iterator[str]:
    """A private directory for Ray's session files, and a reaper that ends the session's processes and
    removes the directory when this process ends in any way, ``kill -9`` included (see
    :mod:`.reaper`). On a normal exit Ray is shut down first, then the reaper tidies what is left."""
    from .reaper import SESSION_ENV

    # short (Ray's socket paths must stay under 107 bytes) and named after the run's pid
    temp_dir = tempfile.mkdtemp(prefix=f"lrp-audit-ray-{os.getpid()}-", dir="/tmp" if os.path.isdir("/tmp") else None)
    saved = os.environ.get(SESSION_ENV)
    os.environ[SESSION_ENV] = temp_dir
    reaper = subprocess.Popen(
        [sys.executable, "-m", "lrp_tasks.cluster.reaper", temp_dir],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield temp_dir
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop(SESSION_ENV, None)
        else:
            os.environ[SESSION_ENV] = saved
        assert reaper.stdin is not None
        reaper.stdin.close()  # end-of-file: the reaper ends what is left and removes the directory


def dashboard_requested() -> bool:
    return os.environ.get(DASHBOARD_ENV, "").strip().lower() in ("1", "true", "yes")


def start_private_ray(num_cpus: int, temp_dir: str | None = None, **kwargs: Any) -> None:
    """``ray.init`` of a new single-node cluster whose every server listens on 127.0.0.1 only."""
    from ray._private import ray_constants

    dashboard = dashboard_requested()
    saved = ray_constants.ENABLE_RAY_CLUSTER
    # False makes Ray keep 127.0.0.1 as the node IP instead of swapping in the routable one
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(
            address="local",
            num_cpus=num_cpus,
            _node_ip_address=LOOPBACK,
            include_dashboard=dashboard,
            dashboard_host=LOOPBACK,
            _temp_dir=temp_dir,
            **kwargs,
        )
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved
