"""Every config key a message, docstring or doc page names (``analysis.spray.k``, ``storage.keep_input: true``)
is a key the config accepts: a hint that points at a key the config refuses sends the user nowhere."""

from __future__ import annotations

import ast
import re
import typing
from pathlib import Path

from pydantic import BaseModel

from lrp_tasks.config import AuditConfig

ROOT = Path(__file__).resolve().parent.parent
TOP = "|".join(sorted(AuditConfig.model_fields, key=len, reverse=True))
KEY = re.compile(rf"(?<![\w./-])(?:{TOP})(?:\.[a-z_][a-z0-9_]*)+(?![\w(/-])")


def _models(annotation: object) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, unions, lists, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found += _models(arg)
    return found


FILE_ENDINGS = {"h5", "pt", "pt2", "md", "yaml", "json", "py", "html", "png", "npz", "parquet", "zarr"}


def names_something_else(path: str) -> bool:
    """A file name (``model.pt2``) or the Ray library's API (``ray.init``), not a config key."""
    first, *rest = path.split(".")
    if rest[-1] in FILE_ENDINGS:
        return True
    if first == "ray":
        import ray

        return hasattr(ray, rest[0])
    return False


def accepted(path: str) -> bool:
    """Is ``a.b.c`` a key of AuditConfig (any branch of a union counts)?"""
    first, *rest = path.split(".")
    annotations = [AuditConfig.model_fields[first].annotation]
    for part in rest:
        nxt = [m.model_fields[part].annotation for a in annotations for m in _models(a) if part in m.model_fields]
        if not nxt:
            return False
        annotations = nxt
    return True


def strings(source: str) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))
    return found


def named_keys() -> list[tuple[str, str]]:
    keys = []
    for package in ("lrp_tasks", "flows"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, text in strings(path.read_text(encoding="utf-8")):
                keys += [(f"{path.relative_to(ROOT)}:{line}", m.group(0)) for m in KEY.finditer(text)]
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for span in re.findall(r"`([^`]+)`", text):
                keys += [(f"{path.relative_to(ROOT)}:{line}", m.group(0)) for m in KEY.finditer(span)]
    return [(where, key) for where, key in keys if not names_something_else(key)]


def test_the_key_finder_sees_keys_and_their_validity():
    assert [m.group(0) for m in KEY.finditer("set analysis.spray.on_change: recompute, not model.eval()")] == [
        "analysis.spray.on_change"
    ]
    assert accepted("analysis.spray.k") and accepted("storage.keep_input") and accepted("metrics.efficient_mprt")
    assert not accepted("analysis.spray.on_change")
    assert names_something_else("ray.init") and names_something_else("analysis.h5")
    assert not names_something_else("ray.address")


def test_every_config_key_named_in_a_message_is_accepted_by_the_config():
    keys = named_keys()
    assert len(keys) > 10  # the finder finds the project's hints
    refused = [f"{where}: {key}" for where, key in keys if not accepted(key)]
    assert not refused, "\n".join(refused)
