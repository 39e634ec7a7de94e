"""Where the model to explain comes from, as written in a config file.

Only formats that load without running code from the file are accepted: a Python builder from
an installed package plus a weights file (safetensors, or a ``.pt``/``.pth``/``.bin`` state dict
read with ``torch.load(weights_only=True)``), a TorchScript archive, or a ``torch.export`` program.
Loading lives in ``lrp_tasks.sources.models``; this module only describes and validates.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from .base import NonEmptyStr, StrictModel

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
BUILDER_PATTERN = (
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
)


def _suffix_in(path: str, suffixes: tuple[str, ...], what: str) -> str:
    if PurePath(path).suffix.lower() not in suffixes:
        raise ValueError(f"{what} must end in one of {', '.join(suffixes)}, got {path!r}")
    return path


class BuilderModelSpec(StrictModel):
    """``builder(**kwargs)`` builds the architecture, ``weights`` fills it (strict: every key, every
    shape). Without ``weights`` the builder's own initialisation is used (tests, random baselines)."""

    kind: Literal["builder"]
    builder: Annotated[str, Field(pattern=BUILDER_PATTERN, examples=["lrp_tasks.models.digits:build_digits_cnn"])]
    kwargs: dict[str, Any] = Field(default_factory=dict)
    weights: NonEmptyStr | None = None
    key: NonEmptyStr | None = None
    """Entry of a checkpoint dict that holds the state dict (e.g. ``state_dict``), if nested."""
    strip_prefix: NonEmptyStr | None = None
    """Prefix removed from every key before loading (e.g. ``module.`` from DataParallel)."""

    @field_validator("weights")
    @classmethod
    def _weights_format(cls, value: str | None) -> str | None:
        return None if value is None else _suffix_in(value, WEIGHT_SUFFIXES, "weights")


class TorchScriptModelSpec(StrictModel):
    """A ``torch.jit.save`` archive."""

    kind: Literal["torchscript"]
    path: NonEmptyStr


class ExportedModelSpec(StrictModel):
    """A ``torch.export.save`` program (``.pt2``); export the model in eval mode, the graph keeps
    the mode it was exported in."""

    kind: Literal["export"]
    path: NonEmptyStr

    @field_validator("path")
    @classmethod
    def _pt2(cls, value: str) -> str:
        return _suffix_in(value, (".pt2",), "an exported program")


ModelSpec = Annotated[BuilderModelSpec | TorchScriptModelSpec | ExportedModelSpec, Field(discriminator="kind")]


def model_files(spec: BuilderModelSpec | TorchScriptModelSpec | ExportedModelSpec) -> dict[str, str]:
    """Local files the spec needs, keyed by the field that names them (for ``check_files``)."""
    if isinstance(spec, BuilderModelSpec):
        return {"weights": spec.weights} if spec.weights else {}
    return {"path": spec.path}
