"""What every dataset source offers: a length, a sample shape, an id, and shard reads.

A source is cheap to create and to pickle (Ray ships it to workers): file handles and memory
maps are opened lazily on first read and dropped when pickled. ``read(start, stop)`` returns the
samples with indices ``start..stop-1`` only, so a shard never loads the whole dataset.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lrp_tasks.config.dataset_spec import Preprocessing

from .errors import DatasetError


@dataclass(frozen=True)
class Batch:
    """Samples ``index`` of a source: model inputs, labels (-1 when unknown), stable string ids."""

    x: torch.Tensor
    """float32, shape (n, *sample_shape), preprocessed."""
    labels: np.ndarray
    """int64, shape (n,)."""
    index: np.ndarray
    """int64, shape (n,): positions in the source."""
    ids: list[str]

    def __len__(self) -> int:
        return len(self.ids)


class Normalizer:
    """``x * scale`` then ``(x - mean) / std`` per channel (axis 1 of a batch)."""

    def __init__(self, prep: Preprocessing, sample_shape: tuple[int, ...]) -> None:
        self.scale = prep.scale
        self.mean = self._per_channel(prep.mean, "mean", sample_shape)
        self.std = self._per_channel(prep.std, "std", sample_shape)

    @staticmethod
    def _per_channel(values: list[float] | None, name: str, shape: tuple[int, ...]) -> np.ndarray | None:
        if values is None:
            return None
        if len(values) == 1:
            return np.float32(values[0])
        if not shape or len(values) != shape[0]:
            raise DatasetError(
                f"preprocessing.{name} has {len(values)} values but samples have shape {shape} "
                f"({shape[0] if shape else 0} channels on the first axis)"
            )
        return np.asarray(values, dtype=np.float32).reshape((len(values),) + (1,) * (len(shape) - 1))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.scale is not None:
            x = x * np.float32(self.scale)
        if self.mean is not None:
            x = x - self.mean
        if self.std is not None:
            x = x / self.std
        return x.astype(np.float32, copy=False)


def fingerprint(*parts: Any) -> str:
    """16 hex digits of sha256 over JSON-encoded parts: a short, stable content id."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class DatasetSource(ABC):
    """Base of the dataset sources; subclasses implement ``__len__`` and ``_read``."""

    kind: str = "?"
    sample_shape: tuple[int, ...]
    dataset_id: str
    """``kind:description@fingerprint``: changes when the samples or their preprocessing change."""
    class_names: list[str] | None = None
    """Names of the label values, when the source knows them."""
    ignore_label: int | None = None
    """A label value that marks an unlabelled sample (read as -1), from ``dataset.ignore_label``."""

    def __init__(self, preprocessing: Preprocessing | None) -> None:
        self.preprocessing = preprocessing or Preprocessing()

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def _read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Raw samples (before scale/mean/std), labels and ids of ``start..stop-1``."""

    def read(self, start: int, stop: int) -> Batch:
        """Samples ``start..stop-1`` (``stop`` is clipped to the length, like slicing)."""
        n = len(self)
        if not 0 <= start <= n or stop < start:
            raise IndexError(f"cannot read samples [{start}, {stop}) of a dataset of {n}")
        stop = min(stop, n)
        if stop == start:
            x = np.zeros((0, *self.sample_shape), dtype=np.float32)
            labels, ids = np.zeros(0, dtype=np.int64), []
        else:
            x, labels, ids = self._read(start, stop)
            x = self._normalize(np.asarray(x, dtype=np.float32))
        return Batch(
            x=torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
            labels=self._unlabel(labels),
            index=np.arange(start, stop, dtype=np.int64),
            ids=list(ids),
        )

    def label_array(self) -> np.ndarray | None:
        """The labels of samples 0, 1, ... without reading the samples (``ignore_label`` read as -1), to
        check them all before a run; None when the source has no labels. A source whose later samples
        repeat earlier labels may return just the first of them."""
        raw = self._all_labels()
        return None if raw is None else self._unlabel(raw)

    def _all_labels(self) -> np.ndarray | None:
        return None

    def _unlabel(self, labels: np.ndarray) -> np.ndarray:
        labels = np.asarray(labels, dtype=np.int64)
        if self.ignore_label is not None:
            labels = np.where(labels == self.ignore_label, -1, labels)
        return labels

    def _normalize(self, x: np.ndarray) -> np.ndarray:
        return Normalizer(self.preprocessing, self.sample_shape)(x)

    def __getstate__(self) -> dict[str, Any]:
        # lazily opened handles (memory maps, zip files, zarr arrays) are not shipped to workers
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_handle")}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.dataset_id}, n={len(self)}, sample_shape={self.sample_shape})"
