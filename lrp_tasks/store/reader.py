"""The read side: :func:`open_audit` gives summaries, relevance and provenance of committed shards.

Reading never writes. The set of committed shards is taken once when the audit is opened, so a reader
sees a consistent snapshot while writers carry on; open again to see newer shards. Paths may be local or
fsspec URLs (the store's Zarr group and Parquet parts are plain files).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import zarr

from .errors import DamagedStoreError, NotAnAuditError
from .layout import AuditLayout, local_path
from .manifest import read_records
from .relevance import CONCEPT_CHANNELS, CONCEPT_RELEVANCE, CONCEPTS, INPUT, LAYERWISE, METRICS, RELEVANCE
from .summaries_io import committed_part_ids, read_parts

if TYPE_CHECKING:  # xarray is imported on first use: writers never need it
    import xarray as xr


class AuditReader:
    """A read-only view of one audit directory (see :func:`open_audit`)."""

    def __init__(self, path: str) -> None:
        local = local_path(path)
        self.path = local if local is not None else path  # 'file://' URLs become plain paths
        self.layout = AuditLayout(self.path)
        self._fs = None
        if local is None:
            import fsspec  # only URLs need it; local paths go through os

            self._fs = fsspec.core.url_to_fs(path)[0]
        try:
            self._group = zarr.open_group(self.layout.zarr_path, mode="r", zarr_format=3)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
            raise NotAnAuditError(f"no audit at {path}: {self.layout.zarr_path} is missing") from exc
        self.attrs: dict[str, Any] = dict(self._group.attrs)
        if "layout" not in self.attrs:
            raise NotAnAuditError(f"{self.layout.zarr_path} is a Zarr group but not an audit (no 'layout' attr)")
        self._parts = committed_part_ids(self.layout.summaries_dir, fs=self._fs)

    # Provenance -------------------------------------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.attrs.get("config") or {})

    @property
    def audit_id(self) -> str:
        return str(self.attrs["audit_id"])

    @property
    def layout_info(self) -> dict[str, Any]:
        return dict(self.attrs["layout"])

    @property
    def class_names(self) -> list[str] | None:
        """Names of the classes when the dataset has them (recorded at creation), else None."""
        names = self.attrs.get("class_names")
        return [str(n) for n in names] if names else None

    @property
    def committed_shards(self) -> set[int]:
        return set(self._parts)

    @functools.cached_property
    def records(self) -> dict[int, dict[str, Any]]:
        """Commit records by shard id (checksums, writer, time) of the committed shards."""
        records = read_records(self.layout, fs=self._fs)
        return {sid: rec for sid, rec in records.items() if sid in self._parts}

    @functools.cached_property
    def committed_samples(self) -> np.ndarray:
        """Sample indices of the committed shards, ascending."""
        info = self.layout_info
        n, size = int(info["n_samples"]), int(info["shard_size"])
        ranges = [np.arange(s * size, min((s + 1) * size, n)) for s in sorted(self._parts)]
        return np.concatenate(ranges) if ranges else np.zeros(0, np.int64)

    # Data -------------------------------------------------------------------------------------------

    @functools.cached_property
    def summaries(self) -> pd.DataFrame:
        """Summary rows of the committed shards, sorted by (sample_index, target_rank); a committed part
        that cannot be read raises :class:`DamagedStoreError` (one line: run ``lrp-audit verify``)."""
        try:
            return read_parts(self._parts.values(), fs=self._fs)
        except (pa.ArrowException, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DamagedStoreError(
                f"audit store at {self.path} is damaged: its summaries cannot be read ({type(exc).__name__}: "
                f"{first[:200]}); run `lrp-audit verify {self.path}` (then `--repair` and `lrp-audit run` to redo "
                "the damaged shards)"
            ) from exc

    def _open_dataset(self, group: str | None = None) -> xr.Dataset:
        """The arrays of the root group (or a subgroup), lazily loaded, over the committed samples."""
        import xarray as xr

        ds = xr.open_dataset(
            self.layout.zarr_path,
            group=group,
            engine="zarr",
            consolidated=self._group.metadata.consolidated_metadata is not None,
            chunks=None,
            mask_and_scale=False,
            zarr_format=3,
        )
        n = int(self.layout_info["n_samples"])
        ds = ds.assign_coords(sample=np.arange(n, dtype=np.int64))
        if len(self.committed_samples) != n:
            ds = ds.isel(sample=self.committed_samples)
        return ds

    @functools.cached_property
    def dataset(self) -> xr.Dataset:
        """All sample arrays as a lazily loaded xarray Dataset over the committed samples (layerwise
        relevances are a subgroup: see :meth:`layerwise`), with the per-sample facts of
        :meth:`sample_coords` as coordinates and class names on ``class`` when the dataset has them."""
        ds = self._open_dataset()
        ds = ds.assign_coords(self.sample_coords())
        names = self.class_names
        if names is not None and "class" in ds.dims and ds.sizes["class"] == len(names):
            ds = ds.assign_coords({"class": np.asarray(names, dtype=object)})
        return ds

    def kept_inputs(self, start: int, stop: int) -> np.ndarray:
        """The inputs the audit kept for samples ``start..stop-1`` (as stored; committed shards only
        hold meaningful rows). Raises ``KeyError`` when the audit did not keep its inputs."""
        if not self.layout_info.get("keep_input"):
            raise KeyError(f"{self.path} was audited without its inputs (storage.keep_input: false)")
        return np.asarray(self._group[INPUT][start:stop])

    def sample_coords(self) -> dict[str, tuple[str, np.ndarray]]:
        """Coordinates on the ``sample`` dim from the summaries (first explanation of each sample):
        ``sample_id``, ``label``, ``predicted``, ``probability``, and ``label_name`` /
        ``predicted_name`` when the dataset has class names."""
        top = self.summaries
        if top.empty:
            return {}
        top = top[top["target_rank"] == 0]
        coords: dict[str, tuple[str, np.ndarray]] = {
            "sample_id": ("sample", top["sample_id"].to_numpy(dtype=object)),
            "label": ("sample", top["label"].to_numpy(np.int64)),
            "predicted": ("sample", top["predicted"].to_numpy(np.int64)),
            "probability": ("sample", top["predicted_probability"].to_numpy(np.float32)),
        }
        names = self.class_names
        if names is not None:
            lookup = np.asarray([*names, ""], dtype=object)  # index -1 (unknown label) -> ""
            for key in ("label", "predicted"):
                idx = coords[key][1]
                coords[f"{key}_name"] = ("sample", lookup[np.where((idx >= 0) & (idx < len(names)), idx, -1)])
        return coords

    @property
    def relevance(self) -> xr.DataArray:
        """Relevance maps with a ``sample`` coordinate (= sample_index) and the sample's label, prediction
        and probability (and class names) as further coordinates, loaded from Zarr on access."""
        return self.dataset[RELEVANCE]

    @property
    def layerwise_names(self) -> list[str]:
        """Layers whose relevance the audit keeps (``storage.layerwise``), in config order."""
        return list(self.layout_info.get("layerwise") or {})

    @functools.cached_property
    def _layerwise_dataset(self) -> xr.Dataset:
        return self._open_dataset(LAYERWISE)

    def layerwise(self, name: str) -> xr.DataArray:
        """Relevance at the output of layer ``name``: ``(sample, [explanation,] channel, height, width)``
        (or ``feature`` for dense layers), with a ``sample`` coordinate, loaded from Zarr on access."""
        names = self.layerwise_names
        if name not in names:
            raise KeyError(f"the audit keeps no layerwise relevance for {name!r}; it keeps {names}")
        arr = self._layerwise_dataset[name]
        prefix = f"{name}."
        return arr.rename({d: d[len(prefix) :] for d in arr.dims if d.startswith(prefix)})

    @property
    def metric_names(self) -> list[str]:
        """Perturbation curves the audit keeps (e.g. ``region_perturbation_morf``), in config order."""
        return list(self.layout_info.get("metrics") or {})

    @functools.cached_property
    def _metrics_dataset(self) -> xr.Dataset:
        return self._open_dataset(METRICS)

    def metric_curves(self, name: str) -> xr.DataArray:
        """Perturbation curves ``name``: the explained logit at steps 0..L, ``(sample, [explanation,] step)``
        with a ``sample`` coordinate, loaded from Zarr on access."""
        names = self.metric_names
        if name not in names:
            raise KeyError(f"the audit keeps no metric curves {name!r}; it keeps {names}")
        arr = self._metrics_dataset[name]
        return arr.rename({f"{name}.step": "step"})

    def _concept_array(self, name: str) -> xr.DataArray:
        if CONCEPTS not in self.dataset:
            raise KeyError("the audit keeps no CRP concepts (storage.crp is not set)")
        if name not in self.dataset:
            raise KeyError(f"the audit has concepts but no {name!r} (written before it was added)")
        return self.dataset[name]

    @property
    def concepts(self) -> xr.DataArray:
        """CRP maps ``(sample, concept, *input)``: concept c of sample i is the input relevance of
        channel ``concept_channels[i, c]`` of the CRP layer."""
        return self._concept_array(CONCEPTS)

    @property
    def concept_channels(self) -> xr.DataArray:
        """``(sample, concept)`` int64: the layer channel each concept map belongs to."""
        return self._concept_array(CONCEPT_CHANNELS)

    @property
    def concept_relevance(self) -> xr.DataArray:
        """``(sample, concept)`` float32: each concept's relevance at the CRP layer (summed over space)."""
        return self._concept_array(CONCEPT_RELEVANCE)

    def heatmap(self, sample_index: int, rank: int = 0, channel_axis: int = 0) -> np.ndarray:
        """Relevance of one sample summed over channels: a 2-D float32 map for ``plt.imshow``.

        ``rank`` picks the explanation when the audit keeps top-k targets. Inputs without a channel axis
        (2-D or 1-D) come back as stored."""
        info = self.layout_info
        n, size, k = int(info["n_samples"]), int(info["shard_size"]), int(info["explanations_per_sample"])
        if not 0 <= sample_index < n:
            raise IndexError(f"sample_index {sample_index} outside [0, {n})")
        shard = sample_index // size
        if shard not in self._parts:
            raise KeyError(f"sample {sample_index} belongs to shard {shard}, which is not committed")
        if not 0 <= rank < k:
            raise IndexError(f"rank {rank} outside [0, {k})")
        arr = self._group[RELEVANCE]
        m = np.asarray(arr[sample_index, rank] if k > 1 else arr[sample_index], dtype=np.float32)
        return m.sum(axis=channel_axis) if m.ndim == 3 else m

    def __repr__(self) -> str:
        n_plan = -(-int(self.layout_info["n_samples"]) // int(self.layout_info["shard_size"]))
        done = f"{len(self._parts)}/{n_plan} shards committed"
        return f"AuditReader({self.path!r}, audit_id={self.audit_id!r}, {done})"


def open_audit(path: str) -> AuditReader:
    """Open an audit directory (local path or fsspec URL) for reading."""
    return AuditReader(str(path))
