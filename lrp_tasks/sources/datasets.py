"""Open the dataset a config names: one source class per dataset kind, one entry point."""

from __future__ import annotations

from pathlib import Path

from lrp_tasks.config.audit import AuditConfig
from lrp_tasks.config.dataset_spec import (
    ArraySpec,
    DatasetSpec,
    DigitsSpec,
    ImageFolderSpec,
    Preprocessing,
    ZarrSpec,
)

from .arrays import ArraySource
from .base import Batch, DatasetSource
from .digits import DigitsSource
from .images import ImageFolderSource
from .zarr_array import ZarrSource


def open_source(
    spec: DatasetSpec, preprocessing: Preprocessing | None = None, root: str | Path | None = None
) -> DatasetSource:
    """The source for one dataset spec; relative paths resolve against `root` (default: cwd)."""
    if isinstance(spec, DigitsSpec):
        return DigitsSource(spec, preprocessing)
    if isinstance(spec, ArraySpec):
        return ArraySource(spec, preprocessing, root)
    if isinstance(spec, ImageFolderSpec):
        return ImageFolderSource(spec, preprocessing, root)
    if isinstance(spec, ZarrSpec):
        return ZarrSource(spec, preprocessing, root)
    raise TypeError(f"not a dataset spec: {spec!r}")


def open_dataset(cfg: AuditConfig, root: str | Path | None = None) -> DatasetSource:
    """The dataset of an audit, with its preprocessing."""
    return open_source(cfg.dataset, cfg.preprocessing, root)


__all__ = ["Batch", "DatasetSource", "open_dataset", "open_source"]
