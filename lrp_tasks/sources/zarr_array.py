"""Samples from an array of an existing Zarr group (local path or fsspec URL); Zarr reads only the
chunks a shard touches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lrp_tasks.config.dataset_spec import Preprocessing, ZarrSpec
from lrp_tasks.config.io import is_url, resolve_path

from .base import DatasetSource, fingerprint
from .errors import DatasetError


class ZarrSource(DatasetSource):
    """Sample ``i`` is ``group[array][i]``; its id is ``str(i)``."""

    kind = "zarr"

    def __init__(
        self, spec: ZarrSpec, preprocessing: Preprocessing | None = None, root: str | Path | None = None
    ) -> None:
        super().__init__(preprocessing)
        self.spec = spec
        self.location = spec.path if is_url(spec.path) else str(resolve_path(spec.path, root))
        samples, labels = self._arrays()
        if samples.ndim < 2:
            raise DatasetError(f"{spec.path}/{spec.array}: samples need at least 2 dimensions, got {samples.shape}")
        if not (np.issubdtype(samples.dtype, np.number) or samples.dtype == np.bool_):
            raise DatasetError(f"{spec.path}/{spec.array}: samples must be numeric, got dtype {samples.dtype}")
        if labels is not None:
            if labels.shape != (samples.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
                raise DatasetError(
                    f"{spec.path}/{spec.labels}: labels must be 1-d integers of length {samples.shape[0]}, "
                    f"got shape {labels.shape} and dtype {labels.dtype}"
                )
        self.length = int(samples.shape[0])
        self.ignore_label = spec.ignore_label
        self.sample_shape = tuple(int(d) for d in samples.shape[1:])
        self.dataset_id = "zarr:{}/{}@{}".format(
            Path(spec.path.rstrip("/")).name,
            spec.array,
            fingerprint(
                "zarr",
                spec.model_dump(exclude={"path"}),
                [samples.shape, str(samples.dtype), samples.chunks],
                self.preprocessing.model_dump(),
            ),
        )

    def _arrays(self) -> tuple[Any, Any | None]:
        handles = getattr(self, "_handles", None)
        if handles is None:
            import zarr

            try:
                group = zarr.open_group(self.location, mode="r")
            except (FileNotFoundError, ValueError, KeyError) as exc:
                raise DatasetError(f"cannot open Zarr group {self.spec.path}: {exc}") from exc
            names = list(group.array_keys())
            for name in filter(None, (self.spec.array, self.spec.labels)):
                if name not in names:
                    raise DatasetError(
                        f"Zarr group {self.spec.path} has no array {name!r} (arrays: {', '.join(names)})"
                    )
            labels = group[self.spec.labels] if self.spec.labels else None
            handles = self._handles = (group[self.spec.array], labels)
        return handles

    def __len__(self) -> int:
        return self.length

    def _all_labels(self) -> np.ndarray | None:
        labels = self._arrays()[1]
        return None if labels is None else np.asarray(labels[:])

    def _read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        samples, labels = self._arrays()
        x = np.asarray(samples[start:stop])
        y = np.asarray(labels[start:stop]) if labels is not None else np.full(stop - start, -1)
        return x, y, [str(i) for i in range(start, stop)]
