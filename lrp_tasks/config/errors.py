"""Turn validation failures into messages a person can act on: file, line, field path, reason.

Pydantic locations contain the tags of discriminated unions (``composite.rules.0.rule.Gamma``);
walking the schema alongside the location tells tags from field names, so the message shows the
path as it is written in the file (``composite.rules[0].rule.gamma``) and, for an unknown key,
which keys the enclosing section accepts.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Union

import yaml
from pydantic import BaseModel, Tag, ValidationError


@dataclass(frozen=True)
class FieldError:
    """One problem: the dotted field path ("" for the whole file), the reason, the line if known."""

    field: str
    message: str
    line: int | None = None


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file, the field and the reason."""

    def __init__(self, source: str, errors: list[FieldError]) -> None:
        self.source = source
        self.errors = errors
        super().__init__(_format(source, errors))


def _format(source: str, errors: list[FieldError]) -> str:
    lines = []
    for error in errors:
        where = f"{source}:{error.line}" if error.line else source
        field = f" {error.field}:" if error.field else ""
        lines.append(f"{where}:{field} {error.message}")
    if len(lines) == 1:
        return lines[0]
    return f"{len(lines)} errors in audit config {source}:\n" + "\n".join(f"  {line}" for line in lines)


def format_path(parts: list[str | int]) -> str:
    """``['composite', 'rules', 2, 'rule']`` → ``composite.rules[2].rule``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# -- schema walk ----------------------------------------------------------------------------------


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """Strip ``Annotated`` and ``Optional``; return the bare type and the Annotated metadata."""
    metadata: list[Any] = []
    while True:
        if typing.get_origin(annotation) is Annotated:
            metadata.extend(annotation.__metadata__)
            annotation = typing.get_args(annotation)[0]
            continue
        if _is_union(annotation):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        tagged_union = getattr(annotation, "tagged_union", None)
        if callable(tagged_union):  # a union made when validating (``rules.AnyRuleSpec``)
            annotation = tagged_union()
            continue
        return annotation, metadata


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (Union, types.UnionType)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _member_for_tag(union: Any, tag: Any) -> Any | None:
    """The union member a discriminator tag selects (a ``Tag`` or a literal ``kind``/``preset``)."""
    for member in typing.get_args(union):
        bare, metadata = _unwrap(member)
        if any(isinstance(m, Tag) and m.tag == tag for m in metadata):
            return member
        if _is_model(bare):
            for field in bare.model_fields.values():
                if typing.get_origin(field.annotation) is typing.Literal and typing.get_args(field.annotation) == (
                    tag,
                ):
                    return member
    return None


def split_location(loc: tuple[str | int, ...], root: type[BaseModel]) -> tuple[list[str | int], type | None]:
    """Field path of a pydantic error location without union tags, and the model owning its last key."""
    path: list[str | int] = []
    current: Any = root
    owner: type | None = None
    for part in loc:
        bare, _ = _unwrap(current) if current is not None else (None, [])
        if _is_union(bare):
            member = _member_for_tag(bare, part)
            if member is not None or isinstance(part, str):
                current = member  # a tag, or the branch label of a plain union: not part of the path
                continue
            bare = None
        path.append(part)
        if _is_model(bare):
            owner = bare
            field = bare.model_fields.get(part) if isinstance(part, str) else None
            current = field.annotation if field is not None else None
        elif typing.get_origin(bare) in (list, tuple, dict) and typing.get_args(bare):
            owner = None
            args = typing.get_args(bare)
            current = args[-1] if typing.get_origin(bare) is dict else args[0]
        else:
            owner, current = None, None
    return path, owner


# -- YAML positions -------------------------------------------------------------------------------


def line_of(node: yaml.Node | None, path: list[str | int]) -> int | None:
    """1-based line of the deepest node of `path` found in the YAML tree (a key's own line)."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in path:
        if isinstance(node, yaml.MappingNode):
            match = next((kv for kv in node.value if kv[0].value == str(part)), None)
            if match is None:
                return line
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


# -- messages -------------------------------------------------------------------------------------


def _message(error: dict[str, Any], path: list[str | int], owner: type | None) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "extra_forbidden" and path:
        key = str(path[-1])
        allowed = list(owner.model_fields) if owner is not None else []
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        listing = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"unknown key {key!r}{hint}{listing}"
    if kind == "missing":
        return "required field is missing"
    if kind == "union_tag_invalid":
        field = str(ctx.get("discriminator", "kind")).strip("'")
        return f"unknown {field} {ctx.get('tag')!r} (expected one of {ctx.get('expected_tags')})"
    if kind == "union_tag_not_found":
        field = str(ctx.get("discriminator", "kind")).strip("'")
        return f"missing {field!r}: it says which kind of {path[-1] if path else 'section'} this is"
    message = str(error["msg"])
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def from_validation_error(
    exc: ValidationError, source: str, root: type[BaseModel], node: yaml.Node | None = None
) -> ConfigError:
    """A ``ConfigError`` listing every problem of `exc` with its field path and line."""
    errors = []
    for error in exc.errors():
        path, owner = split_location(tuple(error["loc"]), root)
        ctx = error.get("ctx") or {}
        if not path and isinstance(ctx.get("field"), str):  # cross-field checks name their field
            path = [int(p) if p.isdigit() else p for p in ctx["field"].split(".")]
        errors.append(FieldError(format_path(path), _message(error, path, owner), line_of(node, path)))
    errors.sort(key=lambda e: e.line or 0)  # stable: pydantic's order within a line
    return ConfigError(source, errors)
