"""A YAML alias bomb is refused while parsing, in bounded memory, naming the field (issue 25 item 3)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lrp_tasks.config import ConfigError
from lrp_tasks.config.io import MAX_EXPANDED_NODES, parse_yaml

BOMB = """\
name: bomb
output: out
model:
  kind: builder
  builder: lrp_tasks.models.digits:build_digits_cnn
  kwargs:
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
dataset: {kind: digits}
"""

# validate the bomb in a child limited to 1.5 GiB of address space: expanding it needs gigabytes
CHILD = textwrap.dedent(
    """
    import resource, sys
    limit = 1536 * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from flows.cli.main import main
    sys.exit(main(["validate", sys.argv[1]]))
    """
)


def test_alias_bomb_fails_fast_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    assert len(BOMB) < 800
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert lines == ["lrp-audit: invalid configuration", lines[1]], proc.stderr[-2000:]
    assert lines[1].startswith(f"{path}:12: model.kwargs.f: YAML aliases expand to"), lines[1]
    assert "Traceback" not in proc.stderr


def test_recursive_alias_is_refused() -> None:
    with pytest.raises(ConfigError, match="alias refers to itself"):
        parse_yaml("a: &x\n  b: *x\n", "rec.yaml")


def test_ordinary_aliases_still_work() -> None:
    text = "low: &low [[-1.0]]\nrules:\n  - {low: *low}\n  - {low: *low}\n"
    data, _ = parse_yaml(text, "ok.yaml")
    assert data["rules"][1]["low"] == [[-1.0]]
    wide = "x: &x [" + ",".join(["1"] * 1000) + "]\ny: [" + ",".join(["*x"] * (MAX_EXPANDED_NODES // 1000 + 1)) + "]\n"
    with pytest.raises(ConfigError, match="y: YAML aliases expand"):
        parse_yaml(wide, "wide.yaml")
