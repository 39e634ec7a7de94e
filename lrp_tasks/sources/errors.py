"""Errors of the model and dataset sources: what could not be loaded, and why."""

from __future__ import annotations


class SourceError(RuntimeError):
    """A model or dataset named by a valid config cannot be loaded."""


class ModelLoadError(SourceError):
    """The model cannot be built or its weights do not fit (or would need code execution)."""


class DatasetError(SourceError):
    """The dataset cannot be opened or a sample cannot be read."""
