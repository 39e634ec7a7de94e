"""Command-line overrides of a config (``--workers 4``), validated exactly like the file.

An override is applied to the config's data and the whole config is validated again, so
``--workers 0`` is refused by the same rule as ``ray: {workers: 0}`` in the file, and the message
names the option as it was typed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from .audit import AuditConfig
from .errors import ConfigError, FieldError, from_validation_error


def apply_overrides(
    cfg: AuditConfig, overrides: Mapping[str, tuple[str, Any]], source: str = "command line"
) -> AuditConfig:
    """`cfg` with ``{dotted.field: (option, value)}`` set, validated as a whole.

    Raises ``ConfigError`` (source: `source`) naming the option (``--workers (ray.workers)``) for
    a value the config would refuse."""
    if not overrides:
        return cfg
    data = cfg.model_dump(mode="json")
    for dotted, (_, value) in overrides.items():
        section = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            section = section.setdefault(key, {})
        section[leaf] = value
    try:
        return AuditConfig.model_validate(data)
    except ValidationError as exc:
        error = from_validation_error(exc, source, AuditConfig)
    options = {dotted: option for dotted, (option, _) in overrides.items()}
    renamed = [
        FieldError(f"{options[e.field]} ({e.field})" if e.field in options else e.field, e.message)
        for e in error.errors
    ]
    raise ConfigError(source, renamed) from None
