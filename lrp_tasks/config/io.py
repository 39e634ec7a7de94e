"""Reading a config file, fingerprinting a config, and checking the files it names.

Validation (``load_config``) is pure: it never touches the files a config names, so a config can be
validated where they do not exist (the Prefect server, CI). ``check_files`` is the separate step
that does, run where the audit reads them. Relative paths in a config file are relative to the
directory of that file (``config_dir``): callers pass it as ``root``; without a root (a config
built in Python or given as a flow parameter) they are relative to the working directory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .audit import AuditConfig
from .canonical import json_digest
from .dataset_spec import ArraySpec, DigitsSpec, ImageFolderSpec, ZarrSpec
from .errors import ConfigError, FieldError, from_validation_error
from .model_spec import BuilderModelSpec, model_files


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-6`` as a float (YAML 1.2) and refuses duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # unhashable key: let the base class report it
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first defined on line {first})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


MAX_EXPANDED_NODES = 100_000
"""Most YAML values a config may hold once its aliases are expanded: a real config has hundreds; a
few hundred bytes of nested aliases (an "alias bomb") expand to billions, which would exhaust memory
wherever the config is copied or serialised (its digest, a worker's copy)."""


def _expanded_size(node: yaml.Node, sizes: dict[int, int], active: set[int]) -> int:
    """Number of values under `node` with every alias expanded (memoised: aliases share nodes)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in active:
        raise _RecursiveAlias(node)
    active.add(key)
    total = 1
    if isinstance(node, yaml.MappingNode):
        total += sum(_expanded_size(k, sizes, active) + _expanded_size(v, sizes, active) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        total += sum(_expanded_size(item, sizes, active) for item in node.value)
    active.discard(key)
    sizes[key] = total
    return total


class _RecursiveAlias(Exception):
    def __init__(self, node: yaml.Node) -> None:
        self.node = node


def _field_of(node: yaml.Node, sizes: dict[int, int], limit: int) -> tuple[str, int]:
    """Dotted path and line of the deepest mapping entry that alone exceeds `limit` values."""
    path: list[str] = []
    line = node.start_mark.line + 1
    while isinstance(node, yaml.MappingNode):
        big = [(k, v) for k, v in node.value if sizes.get(id(v), 0) > limit]
        if not big:
            break
        key, node = big[0]
        path.append(str(key.value) if isinstance(key, yaml.ScalarNode) else "?")
        line = key.start_mark.line + 1
    return ".".join(path), line


def check_expansion(node: yaml.Node, source: str, limit: int = MAX_EXPANDED_NODES) -> None:
    """Refuse a document whose aliases expand past `limit` values, or refer to themselves, before
    anything builds or serialises it (the node tree itself is as small as the file)."""
    sizes: dict[int, int] = {}
    try:
        total = _expanded_size(node, sizes, set())
    except _RecursiveAlias as exc:
        line = exc.node.start_mark.line + 1
        raise ConfigError(source, [FieldError("", "YAML alias refers to itself (a recursive value)", line)]) from None
    except RecursionError:
        raise ConfigError(source, [FieldError("", "YAML nesting too deep")]) from None
    if total > limit:
        field, line = _field_of(node, sizes, limit)
        raise ConfigError(
            source,
            [
                FieldError(
                    field,
                    f"YAML aliases expand to {total:,} values, more than the {limit:,} a config may hold "
                    "(an alias bomb?): write the values out or use fewer nested aliases",
                    line,
                )
            ],
        )


def parse_yaml(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """The document of `text` and its node tree (for line numbers); syntax errors name the line.
    Aliases are expanded only within :data:`MAX_EXPANDED_NODES` values (``check_expansion``)."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            check_expansion(node, source)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise ConfigError(source, [FieldError("", f"YAML syntax error: {reason}", line)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, [FieldError("", f"YAML error: {exc}")]) from None
    finally:
        loader.dispose()
    return data, node


def parse_config(data: Any, source: str = "<config>", node: yaml.Node | None = None) -> AuditConfig:
    """Validate an already parsed document (a dict) into an ``AuditConfig``."""
    if data is None:
        raise ConfigError(source, [FieldError("", "the config is empty")])
    if not isinstance(data, dict):
        raise ConfigError(
            source, [FieldError("", f"the top level must be a mapping of fields, got {type(data).__name__}")]
        )
    try:
        return AuditConfig.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc, source, AuditConfig, node) from None


def config_dir(path: str | Path) -> Path:
    """The directory relative paths of the config file at `path` resolve against: its own."""
    return Path(path).expanduser().absolute().parent


def load_config(path: str | Path, *, require_files: bool = False, root: str | Path | None = None) -> AuditConfig:
    """Read and validate a YAML audit config; ``require_files`` also runs ``check_files`` with
    paths relative to ``root`` (default: the config file's directory)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, [FieldError("", "config file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [FieldError("", f"cannot read the config file: {exc}")]) from None
    data, node = parse_yaml(text, source)
    cfg = parse_config(data, source, node)
    if require_files:
        check_files(cfg, root=config_dir(path) if root is None else root, source=source)
    return cfg


# -- fingerprint ----------------------------------------------------------------------------------


def config_digest(cfg: AuditConfig | Mapping[str, Any], exclude: Iterable[str] | None = None) -> str:
    """sha256 of the config's canonical JSON (every default filled in, so shorthands and defaults do not
    change it); ``exclude`` drops fields (dotted paths) that do not change results."""
    data = cfg.model_dump(mode="json") if isinstance(cfg, AuditConfig) else cfg
    return json_digest(data, exclude or ())


# -- files ----------------------------------------------------------------------------------------


def is_url(path: str) -> bool:
    """fsspec URLs (``s3://…``, ``gs://…``) are left to the reader; local paths are checked."""
    return "://" in path


def resolve_path(path: str, root: str | Path | None = None) -> Path:
    """`path` itself when absolute or when `root` is None (then relative to the working directory),
    else `root` / `path`."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() or root is None else Path(root) / candidate


def _dataset_files(spec: Any) -> dict[str, tuple[str, str]]:
    """Local paths of a dataset spec: field → (path, "file" | "dir")."""
    if isinstance(spec, ArraySpec):
        files = {"path": (spec.path, "file")}
        if spec.labels_path:
            files["labels_path"] = (spec.labels_path, "file")
        return files
    if isinstance(spec, ImageFolderSpec):
        return {"path": (spec.path, "dir")}
    if isinstance(spec, ZarrSpec):
        return {} if is_url(spec.path) else {"path": (spec.path, "dir")}
    assert isinstance(spec, DigitsSpec)
    return {}


def local_paths(cfg: AuditConfig) -> dict[str, str]:
    """Every path the config reads or writes, by dotted field (URLs included: the caller decides)."""
    paths = {f"model.{key}": path for key, path in model_files(cfg.model).items()}
    paths.update({f"dataset.{key}": path for key, (path, _) in _dataset_files(cfg.dataset).items()})
    if isinstance(cfg.model, BuilderModelSpec) and cfg.model.module_dir is not None:
        paths["model.module_dir"] = cfg.model.module_dir
    if isinstance(cfg.dataset, ZarrSpec) and is_url(cfg.dataset.path):
        paths["dataset.path"] = cfg.dataset.path
    paths["output"] = cfg.output
    return paths


def check_files(cfg: AuditConfig, *, root: str | Path | None = None, source: str = "<config>") -> None:
    """Raise ``ConfigError`` naming every local file or folder the config needs that is missing."""
    wanted = {f"model.{key}": (path, "file") for key, path in model_files(cfg.model).items()}
    wanted.update({f"dataset.{key}": value for key, value in _dataset_files(cfg.dataset).items()})
    if isinstance(cfg.model, BuilderModelSpec) and cfg.model.module_dir is not None:
        wanted["model.module_dir"] = (cfg.model.module_dir, "dir")
    errors = []
    for field, (path, what) in wanted.items():
        resolved = resolve_path(path, root)
        ok = resolved.is_file() if what == "file" else resolved.is_dir()
        if not ok:
            noun = "file" if what == "file" else "folder"
            state = f"is not a {noun}" if resolved.exists() else "not found"
            where = os.path.normpath(resolved.absolute())
            errors.append(FieldError(field, f"{noun} {state}: {path} (resolved to {where})"))
    if errors:
        raise ConfigError(source, errors)


def resolve_paths(cfg: AuditConfig, root: str | Path | None = None) -> AuditConfig:
    """A copy whose local paths are absolute, resolved against `root` (default: the working
    directory), so that workers with another working directory read the same files. A builder's
    ``module_dir`` becomes absolute too (`root` itself when not given): where workers import it."""
    base = Path(root) if root is not None else Path.cwd()

    def absolute(path: str | None) -> str | None:
        return path if path is None or is_url(path) else os.path.normpath(resolve_path(path, base).absolute())

    model = cfg.model
    if isinstance(model, BuilderModelSpec):
        module_dir = absolute(model.module_dir or ".")
        model = model.model_copy(update={"weights": absolute(model.weights), "module_dir": module_dir})
    else:
        model = model.model_copy(update={"path": absolute(model.path)})
    dataset = cfg.dataset
    updates = {key: absolute(path) for key, (path, _) in _dataset_files(dataset).items()}
    dataset = dataset.model_copy(update=updates)
    return cfg.model_copy(update={"model": model, "dataset": dataset, "output": absolute(cfg.output)})
