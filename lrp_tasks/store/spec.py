"""What an audit store holds (:class:`AuditSpec`) and what one shard brings to it (:class:`ShardResult`).

The spec is fixed when the store is created and recorded in the Zarr group attrs; resuming compares the
new spec with the recorded one field by field, so a changed config never mixes into an old store.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from lrp_tasks.config.canonical import canonical_json, json_digest

from .layout import MAX_SHARD_SIZE, default_chunk_size, shard_size_message

Dtype = Literal["float16", "float32"]
Compression = Literal["lz4", "zstd", "none"]

_DTYPES = ("float16", "float32")
_COMPRESSIONS = ("lz4", "zstd", "none")


@dataclass(frozen=True)
class AuditSpec:
    """Shape, storage and provenance of one audit.

    ``explanations_per_sample`` (k) > 1 adds a k axis after the sample axis (top-k targets).
    ``layerwise`` maps module names to the shape of one explanation's relevance at that module's output
    (without the k axis, which is added as for ``relevance``): each is kept in ``layerwise/<name>``.
    ``metrics`` maps curve names (e.g. ``region_perturbation_morf``) to their number of points: each is
    kept in ``metrics/<name>`` as one float32 curve per explanation (with the k axis as for ``relevance``).
    ``n_concepts`` > 0 keeps CRP concept maps with the channel and relevance of each concept per sample;
    ``concept_ids`` fixes the channels (indexed features), ``None`` lets them vary per sample (top-n).
    ``shard_size`` is the unit of work and of commit; ``chunk_size`` (Zarr chunk along samples) must
    divide it so that a shard is whole chunks and two writers never touch one chunk. ``None`` picks the
    largest divisor keeping chunks under ~8 MiB. ``config_digest=None`` hashes ``config`` without the
    ``operational`` fields (dotted paths such as ``"ray"`` or ``"output"``: where and with what resources
    the audit runs, not what it computes; a store resumes with them changed);
    ``audit_id=None`` derives one on creation (and adopts the stored one on resume).

    The store's identity is the config digest, ``weights_digest``, ``dataset`` (a fingerprint of what
    the dataset reader reads: ``{"id": ..., "digest": ..., "files": {name: digest}}``) and the layout:
    resuming with any of them changed is refused, naming what changed.
    """

    n_samples: int
    sample_shape: tuple[int, ...]
    n_classes: int
    shard_size: int
    explanations_per_sample: int = 1
    dtype: Dtype = "float32"
    keep_input: bool = False
    input_dtype: str = "float32"
    n_concepts: int = 0
    concept_ids: tuple[int, ...] | None = None
    layerwise: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    metrics: Mapping[str, int] = field(default_factory=dict)
    chunk_size: int | None = None
    compression: Compression = "lz4"
    config: Mapping[str, Any] = field(default_factory=dict)
    config_digest: str | None = None
    weights_digest: str = ""
    composite: str = ""
    audit_id: str | None = None
    #: names of the classes (the dataset's, when it has them): a group attribute, not part of the layout
    class_names: tuple[str, ...] | None = None
    operational: tuple[str, ...] = ()
    dataset: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.sample_shape)
        object.__setattr__(self, "sample_shape", shape)
        if self.concept_ids is not None:
            object.__setattr__(self, "concept_ids", tuple(int(c) for c in self.concept_ids))
        problems = []
        layers: dict[str, tuple[int, ...]] = {}
        for name, layer_shape in dict(self.layerwise).items():
            dims = tuple(int(s) for s in layer_shape)
            layers[str(name)] = dims
            if not name or "/" in name or name in (".", "..") or name.startswith("__"):
                problems.append(f"layerwise name {name!r} cannot name a Zarr array (empty, '/', '.', '..', '__...')")
            if not dims or any(s < 1 for s in dims):
                problems.append(f"layerwise[{name!r}] shape must be non-empty positive sizes, got {dims}")
        object.__setattr__(self, "layerwise", layers)
        curves = {str(name): int(points) for name, points in dict(self.metrics).items()}
        for name, points in curves.items():
            if not name or "/" in name or name in (".", "..") or name.startswith("__"):
                problems.append(f"metrics name {name!r} cannot name a Zarr array (empty, '/', '.', '..', '__...')")
            if points < 1:
                problems.append(f"metrics[{name!r}] must have >= 1 points, got {points}")
        object.__setattr__(self, "metrics", curves)
        if self.n_samples < 1:
            problems.append(f"n_samples must be >= 1, got {self.n_samples}")
        if not shape or any(s < 1 for s in shape):
            problems.append(f"sample_shape must be non-empty positive sizes, got {shape}")
        if self.n_classes < 1:
            problems.append(f"n_classes must be >= 1, got {self.n_classes}")
        if self.shard_size < 1:
            problems.append(f"shard_size must be >= 1, got {self.shard_size}")
        elif self.shard_size > MAX_SHARD_SIZE:
            problems.append(shard_size_message(self.shard_size))
        if self.explanations_per_sample < 1:
            problems.append(f"explanations_per_sample must be >= 1, got {self.explanations_per_sample}")
        if self.dtype not in _DTYPES:
            problems.append(f"dtype must be one of {_DTYPES}, got {self.dtype!r}")
        if self.compression not in _COMPRESSIONS:
            problems.append(f"compression must be one of {_COMPRESSIONS}, got {self.compression!r}")
        if self.n_concepts < 0:
            problems.append(f"n_concepts must be >= 0, got {self.n_concepts}")
        if self.concept_ids is not None and len(self.concept_ids) != self.n_concepts:
            problems.append(f"concept_ids has {len(self.concept_ids)} ids for n_concepts={self.n_concepts}")
        if self.concept_ids is not None and (
            min(self.concept_ids, default=0) < 0 or len(set(self.concept_ids)) != len(self.concept_ids)
        ):
            problems.append(f"concept_ids must be distinct channel indices >= 0, got {self.concept_ids}")
        if self.chunk_size is not None and (self.chunk_size < 1 or self.shard_size % self.chunk_size):
            problems.append(
                f"chunk_size {self.chunk_size} must divide shard_size {self.shard_size} (a shard must be whole chunks)"
            )
        np.dtype(self.input_dtype)  # raises on a bad name
        canonical_json(dict(self.config))
        canonical_json(dict(self.dataset))
        object.__setattr__(self, "operational", tuple(self.operational))
        if not problems and self.chunk_size is None:
            try:
                self.resolved_chunk_size  # noqa: B018 (refuses shard sizes that only split into tiny chunks)
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise ValueError("invalid AuditSpec: " + "; ".join(problems))

    # Derived values -------------------------------------------------------------------------------

    @property
    def k(self) -> int:
        return self.explanations_per_sample

    @property
    def digest(self) -> str:
        """The config digest: the caller's, or the sha256 of the canonical config JSON without the
        operational fields."""
        return self.config_digest or json_digest(self.config, self.operational)

    @property
    def dataset_digest(self) -> str:
        return str(self.dataset.get("digest", ""))

    @property
    def relevance_row_shape(self) -> tuple[int, ...]:
        """Shape of one sample's relevance: the input shape, with a leading k axis when k > 1."""
        return ((self.k,) if self.k > 1 else ()) + self.sample_shape

    @property
    def target_row_shape(self) -> tuple[int, ...]:
        return (self.k,) if self.k > 1 else ()

    def layerwise_row_shape(self, name: str) -> tuple[int, ...]:
        """Shape of one sample's relevance at layer ``name``: with a leading k axis when k > 1."""
        return ((self.k,) if self.k > 1 else ()) + self.layerwise[name]

    def metric_row_shape(self, name: str) -> tuple[int, ...]:
        """Shape of one sample's curve ``name``: its points, with a leading k axis when k > 1."""
        return ((self.k,) if self.k > 1 else ()) + (self.metrics[name],)

    @property
    def resolved_chunk_size(self) -> int:
        if self.chunk_size is not None:
            return self.chunk_size
        itemsize = np.dtype(self.dtype).itemsize
        per_sample = max(
            int(np.prod(self.relevance_row_shape)) * itemsize,
            int(np.prod(self.sample_shape)) * np.dtype(self.input_dtype).itemsize if self.keep_input else 0,
            int(np.prod(self.sample_shape)) * self.n_concepts * itemsize,
            self.n_classes * 4,
            *(int(np.prod(self.layerwise_row_shape(name))) * itemsize for name in self.layerwise),
            *(int(np.prod(self.metric_row_shape(name))) * 4 for name in self.metrics),
        )
        return default_chunk_size(self.shard_size, per_sample)

    @property
    def resolved_concept_ids(self) -> tuple[int, ...]:
        """The fixed channel of each concept; -1 where channels vary per sample (see concept_channels)."""
        return self.concept_ids if self.concept_ids is not None else (-1,) * self.n_concepts

    def new_audit_id(self) -> str:
        """An id for a new audit: short config digest + random suffix (readable, never reused)."""
        return f"{self.digest[:12]}-{uuid.uuid4().hex[:8]}"

    def layout_dict(self) -> dict[str, Any]:
        """The fields that fix array shapes and storage; must match exactly to resume."""
        layout: dict[str, Any] = {
            "n_samples": self.n_samples,
            "sample_shape": list(self.sample_shape),
            "n_classes": self.n_classes,
            "explanations_per_sample": self.k,
            "shard_size": self.shard_size,
            "chunk_size": self.resolved_chunk_size,
            "dtype": self.dtype,
            "keep_input": self.keep_input,
            "input_dtype": str(np.dtype(self.input_dtype)),
            "n_concepts": self.n_concepts,
            "concept_ids": list(self.resolved_concept_ids),
            "compression": self.compression,
        }
        # Added after format 1 shipped: present only when used, so older audits without them resume.
        if self.n_concepts:
            layout["concept_arrays"] = ["concept_channels", "concept_relevance"]
        if self.layerwise:
            layout["layerwise"] = {name: list(shape) for name, shape in self.layerwise.items()}
        if self.metrics:
            layout["metrics"] = dict(self.metrics)
        return layout


@dataclass
class ShardResult:
    """Everything the pipeline produced for samples ``start:stop`` (numpy arrays; convert tensors first).

    relevance ``(n, *input)`` or ``(n, k, *input)``, logits ``(n, C)``, target ``(n,)`` or ``(n, k)``,
    input ``(n, *input)`` when the audit keeps inputs, and the summary rows (a DataFrame from
    :func:`lrp_tasks.audit.summaries.summarize` or, faster, a Table from
    :func:`~lrp_tasks.audit.summaries.summary_table`).
    With CRP concepts (``n_concepts`` > 0): concepts ``(n, n_concepts, *input)``, concept_channels
    ``(n, n_concepts)`` (integers: the layer channel of each concept map) and concept_relevance
    ``(n, n_concepts)`` (the concept's relevance at that layer). With layerwise relevances: ``layerwise``
    maps each layer name of the spec to ``(n, *layer_shape)`` or ``(n, k, *layer_shape)``. With metric
    curves: ``metrics`` maps each curve name of the spec to ``(n, points)`` or ``(n, k, points)``.
    """

    shard_id: int
    start: int
    stop: int
    relevance: np.ndarray
    logits: np.ndarray
    target: np.ndarray
    summaries: pd.DataFrame | pa.Table
    input: np.ndarray | None = None
    concepts: np.ndarray | None = None
    concept_channels: np.ndarray | None = None
    concept_relevance: np.ndarray | None = None
    layerwise: Mapping[str, np.ndarray] | None = None
    metrics: Mapping[str, np.ndarray] | None = None

    @property
    def n(self) -> int:
        return self.stop - self.start
