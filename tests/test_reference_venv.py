"""tests/reference_venv.py, the one helper of the cross-check tests' reference environments: skip
naming the set-up command where one is missing, fail with CI=true, run a script in one."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests import reference_venv
from tests.reference_venv import ReferenceVenv, needs_venv, require_venv, run_in_venv, run_json_lines, venv_python

ROOT = Path(__file__).resolve().parents[1]


def test_the_five_environments_live_beside_the_project():
    assert sorted(reference_venv.VENVS) == ["corelay", "lxt", "quantus", "virelay", "zennit"]
    for name in reference_venv.VENVS:
        assert venv_python(name) == ROOT / f".venv-{name}" / "bin" / "python"
    assert needs_venv("corelay").mark.name == "requires_venv" and needs_venv("corelay").args == ("corelay",)
    with pytest.raises(KeyError, match="no reference environment 'torch'"):
        needs_venv("torch")


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """The helper looking for environments in an empty directory, with one fake ``fake`` environment
    whose python is this interpreter."""
    monkeypatch.setattr(reference_venv, "ROOT", tmp_path)
    monkeypatch.setitem(reference_venv.VENVS, "fake", ReferenceVenv("fake", "a fake", "bash setup --with-fake"))
    (tmp_path / ".venv-fake" / "bin").mkdir(parents=True)
    (tmp_path / ".venv-fake" / "bin" / "python").symlink_to(sys.executable)
    return tmp_path


def test_a_missing_environment_skips_naming_how_to_create_it(elsewhere, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(
        pytest.skip.Exception,
        match=r"\.venv-corelay \(CoRelAy 1\.0\) missing: run `bash scripts/"
        r"setup\.sh --with-corelay` \(`bash scripts/setup\.sh --with-references` creates all five\)",
    ):
        require_venv("corelay")
    with pytest.raises(
        pytest.skip.Exception, match=r"\.venv-zennit .* run `bash scripts/setup\.sh --with-references`$"
    ):
        run_in_venv("zennit", elsewhere / "never_run.py")


@pytest.mark.parametrize("value", ["true", "True", "1"])
def test_a_missing_environment_fails_in_ci(elsewhere, monkeypatch, value):
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match=r"\.venv-quantus .* missing.*CI=true"):
        require_venv("quantus")


def test_a_script_runs_in_the_environment_from_the_repository_root(elsewhere, monkeypatch):
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    assert require_venv("fake") == elsewhere / ".venv-fake" / "bin" / "python"
    script = elsewhere / "script.py"
    script.write_text(
        "import json, os, sys\n"
        "print('a line that is not JSON')\n"
        "print(json.dumps({'argv': sys.argv[1:], 'cwd': os.getcwd(), 'path': os.environ.get('PYTHONPATH')}))\n"
        "print(json.dumps({'n': 2}))\n"
    )
    rows = run_json_lines("fake", script, "a", "b c")
    assert rows == [{"argv": ["a", "b c"], "cwd": str(elsewhere), "path": str(elsewhere)}, {"n": 2}]
    out = run_in_venv("fake", script, project_on_path=False)
    assert out.splitlines()[0] == "a line that is not JSON" and '"path": "/somewhere/else"' in out
    assert os.environ["PYTHONPATH"] == "/somewhere/else"


def test_a_failing_script_fails_with_its_stderr(elsewhere):
    script = elsewhere / "fails.py"
    script.write_text("import sys\nsys.exit('the reference said no')\n")
    with pytest.raises(AssertionError, match="the reference said no"):
        run_in_venv("fake", script)
