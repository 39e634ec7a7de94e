"""The shared rule for tests that need a system tool: skip with the reason where it is absent,
fail with CI=true (where .ci/run installs it)."""

from __future__ import annotations

import sys

import pytest

from tests.system_tools import find_tool, require_tool

ABSENT = "lrp-audit-no-such-tool-4711"


def test_absent_tool_skips_naming_it_and_its_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=rf"`{ABSENT}` not found.*install it: apt-get install x"):
        require_tool(ABSENT, install="apt-get install x")


@pytest.mark.parametrize("value", ["true", "True", "1"])
def test_absent_tool_fails_in_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match=rf"`{ABSENT}` not found.*CI=true"):
        require_tool(ABSENT)


def test_present_tool_is_found_among_alternatives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    python = require_tool(ABSENT, "python")  # the virtualenv's bin dir is searched first
    assert find_tool("python") == python and python.startswith(sys.prefix)
