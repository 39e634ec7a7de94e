"""lrp_tasks.cluster.local_ray: the private Ray's authentication environment, set for a session and restored."""

from __future__ import annotations

import os

from lrp_tasks.cluster import local_ray


def test_private_auth_uses_a_fresh_token_and_restores_the_environment(monkeypatch):
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    with local_ray.private_auth() as mode:
        assert mode == "token" and os.environ["RAY_AUTH_MODE"] == "token"
        first = os.environ["RAY_AUTH_TOKEN"]
        assert len(first) == 64
    assert "RAY_AUTH_MODE" not in os.environ and "RAY_AUTH_TOKEN" not in os.environ
    with local_ray.private_auth():
        assert os.environ["RAY_AUTH_TOKEN"] != first


def test_an_explicit_auth_mode_is_respected(monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    with local_ray.private_auth() as mode:
        assert mode == "disabled" and "RAY_AUTH_TOKEN" not in os.environ
    assert os.environ["RAY_AUTH_MODE"] == "disabled"


def test_dashboard_only_when_asked(monkeypatch):
    monkeypatch.delenv(local_ray.DASHBOARD_ENV, raising=False)
    assert not local_ray.dashboard_requested()
    monkeypatch.setenv(local_ray.DASHBOARD_ENV, "1")
    assert local_ray.dashboard_requested()
