"""Where the model to explain comes from, as written in a config file.

Only formats that load without running code from the file are accepted: a Python builder from
an installed package plus a weights file (safetensors, or a ``.pt``/``.pth``/``.bin`` state dict
read with ``torch.load(weights_only=True)``), or a ``torch.export`` program (the engine lowers its
aten operations onto layers and functions). TorchScript archives are refused: their compiled graph
cannot be explained.
Loading lives in ``lrp_tasks.sources.models``; this module only describes and validates.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator

from .base import NonEmptyStr, NonNegativeInt, StrictModel, invalid

DEFAULT_MODEL_SEED = 0
"""torch's random seed while a builder runs when ``model.seed`` is not given."""
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
    """``module:function`` returning the torch.nn.Module; the module is imported from ``module_dir``
    (default: the config file's directory) or from the installed packages. Never the standard library;
    from this form (the flow's typed config) only ``lrp_tasks.models``, builders registered in the
    ``lrp_audit.builders`` entry-point group and zoos enabled by ``LRP_AUDIT_BUILDER_ZOOS``."""
    kwargs: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments of the builder (e.g. ``num_classes: 10``)."""
    weights: NonEmptyStr | None = None
    """State dict file: .safetensors, or .pt/.pth/.bin read without code execution (relative: to the
    config file's directory); none: the builder's own initialisation."""
    key: NonEmptyStr | None = None
    """Entry of a checkpoint dict that holds the state dict (e.g. ``state_dict``), if nested."""
    strip_prefix: NonEmptyStr | None = None
    """Prefix removed from every key before loading (e.g. ``module.`` from DataParallel)."""
    module_dir: NonEmptyStr | None = None
    """Directory searched first for the builder's module (relative: to the config file's directory);
    default: the config file's directory itself."""
    seed: NonNegativeInt | None = Field(default=None, exclude_if=lambda value: value is None)
    """torch's random seed while the builder runs (default 0), so that every worker builds the same
    initial weights: what a builder without ``weights`` explains. Left out of the config's JSON when
    not given, so configs written before it keep their digest."""

    @field_validator("weights")
    @classmethod
    def _weights_format(cls, value: str | None) -> str | None:
        return None if value is None else _suffix_in(value, WEIGHT_SUFFIXES, "weights")


class ExportedModelSpec(StrictModel):
    """A ``torch.export.save`` program (``.pt2``); export the model in eval mode, the graph keeps
    the mode it was exported in."""

    kind: Literal["export"]
    path: NonEmptyStr
    """The ``torch.export.save`` program, a .pt2 file (relative: to the config file's directory)."""

    @field_validator("path")
    @classmethod
    def _pt2(cls, value: str) -> str:
        return _suffix_in(value, (".pt2",), "an exported program")


def _known_kind(data: Any) -> Any:
    """Configs that name a removed kind get the reason and the way out, not a bare tag error."""
    if isinstance(data, dict) and data.get("kind") == "torchscript":
        raise invalid(
            "model_kind",
            "model.kind 'torchscript' is not supported: a TorchScript archive's compiled graph cannot be explained "
            "by LRP. Use kind: builder (the model's code and a weights file), or export the model with "
            "torch.export.save(torch.export.export(model.eval(), (example_input,)), 'model.pt2') and use kind: export",
        )
    return data


ModelSpec = Annotated[
    BuilderModelSpec | ExportedModelSpec, Field(discriminator="kind"), BeforeValidator(_known_kind)
]


def model_files(spec: BuilderModelSpec | ExportedModelSpec) -> dict[str, str]:
    """Local files the spec needs, keyed by the field that names them (for ``check_files``)."""
    if isinstance(spec, BuilderModelSpec):
        return {"weights": spec.weights} if spec.weights else {}
    return {"path": spec.path}
