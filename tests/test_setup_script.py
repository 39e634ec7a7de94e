"""scripts/setup.sh's options (run in a copy with python and pip stubbed: nothing is installed) and
the test command: .ci/run runs exactly the README's."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCES = [".venv-corelay", ".venv-lxt", ".venv-quantus", ".venv-virelay", ".venv-zennit"]

STUB = """#!/usr/bin/env bash
# `-m venv DIR`: DIR/bin/python is this stub; `-m pip ...`: logged with the environment's name
if [ "$1" = -m ] && [ "$2" = venv ]; then mkdir -p "$3/bin"; cp "$STUB" "$3/bin/python"; exit 0; fi
if [ "$1" = -m ] && [ "$2" = pip ]; then echo "$(basename "$(dirname "$(dirname "$0")")") ${*:3}" >> "$LOG"; fi
"""


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^bash scripts/setup\.sh .*pytest.*$", readme, flags=re.M)
    assert commands == ["bash scripts/setup.sh --with-references && .venv/bin/python -m pytest -q"]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci[-1] == commands[0] and ci[-2] == "# README: Tests"


@pytest.fixture
def setup_copy(tmp_path):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    stub = tmp_path / "python-stub"
    stub.write_text(STUB)
    stub.chmod(0o755)
    log = tmp_path / "pip.log"

    def run(*args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
        for venv in tmp_path.glob(".venv*"):
            shutil.rmtree(venv)
        log.write_text("")
        env = {"PATH": "/usr/bin:/bin", "PYTHON": str(stub), "STUB": str(stub), "LOG": str(log)}
        proc = subprocess.run(
            [bash, str(tmp_path / "scripts" / "setup.sh"), *args], capture_output=True, text=True, env=env, timeout=60
        )
        return proc, log.read_text().splitlines()

    return run


@pytest.mark.parametrize(
    ("args", "references"),
    [
        ((), []),
        (("--with-references",), REFERENCES),
        (("--with-zennit",), REFERENCES),  # the old name of --with-references
        (("--with-quantus",), [".venv-quantus"]),
        (("--with-corelay",), [".venv-corelay"]),
        (("--with-virelay",), [".venv-virelay"]),
        (("--with-lxt",), [".venv-lxt"]),
        (("--with-virelay", "--with-quantus"), [".venv-quantus", ".venv-virelay"]),
        (("--with-corelay", "--with-references"), REFERENCES),
    ],
)
def test_setup_options_choose_the_reference_environments(setup_copy, args, references):
    proc, pip = setup_copy(*args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("set-up done")
    assert pip[:2] == [".venv install -q --upgrade pip", ".venv install -q -c constraints.txt -e .[pipeline,dev]"]
    assert {line.split()[0] for line in pip} == {".venv", *references}
    if ".venv-zennit" in references:
        assert any(line.startswith(".venv-zennit") and "zennit==1.0.0" in line for line in pip)
    if ".venv-lxt" in references:
        assert any(line.startswith(".venv-lxt") and "lxt==2.1.*" in line and "transformers==4.52.4" in line
                   for line in pip)


def test_an_unknown_option_is_refused_before_anything_is_installed(setup_copy):
    proc, pip = setup_copy("--with-zenit")
    assert proc.returncode == 2 and "unknown option --with-zenit" in proc.stderr
    assert pip == []
