"""The Zarr v3 group ``relevance.zarr``: created once and atomically, then written in whole chunks.

Zarr loses data silently when two writers touch one chunk (each rewrites the whole chunk), so every write
here covers whole chunks of one shard only, and array metadata is never rewritten after creation.
Creation builds the group in a hidden temporary directory and renames it into place: concurrent
creators race on one atomic rename, and the loser opens the winner's group.

Whole chunks (and the short last chunk, padded with the fill value as Zarr pads it) are encoded here
with the array's own codecs (bytes + optional Blosc, read from the array metadata) and each handed to
a background fsync as soon as it is written. A chunk file that does not exist yet is created
exclusively in place; one that exists (a shard written again) is written to a temporary in the store's
staging directory and renamed over it: a chunk file is never rewritten in place, so a reader can never
decode a torn chunk, even of a shard that is being re-written. Arrays with other codecs go through Zarr.
"""

from __future__ import annotations

import errno
import os
import sys
import uuid
import warnings
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import numcodecs
import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec
from zarr.core.chunk_grids import RegularChunkGrid
from zarr.errors import ZarrUserWarning

from .durable import fsync_path, fsync_tree, parent_dirs, replace_into, write_hidden
from .errors import AuditStoreError, NotAnAuditError
from .layout import RELEVANCE_ZARR, TMP_SUFFIX
from .removal import remove_owned, zarr_tree
from .spec import AuditSpec

RELEVANCE = "relevance"
INPUT = "input"
LOGITS = "logits"
TARGET = "target"
CONCEPTS = "concepts"
CONCEPT_IDS = "concept_ids"
CONCEPT_CHANNELS = "concept_channels"
CONCEPT_RELEVANCE = "concept_relevance"
LAYERWISE = "layerwise"
"""Subgroup holding one array per kept layer; xarray's view of the root group does not include it."""

#: Arrays that are written shard by shard along the sample axis (besides ``layerwise/<name>``).
SAMPLE_ARRAYS = (RELEVANCE, INPUT, LOGITS, TARGET, CONCEPTS, CONCEPT_CHANNELS, CONCEPT_RELEVANCE)


METRICS = "metrics"
"""Subgroup holding one array of perturbation curves per metric and order (sample × [k ×] step)."""


def metric_key(name: str) -> str:
    """Path (inside the group) of the array holding the curves ``name``."""
    return f"{METRICS}/{name}"


def layerwise_key(name: str) -> str:
    """Path (inside the group) of the array holding the relevance at the output of layer ``name``."""
    return f"{LAYERWISE}/{name}"


# Every chunk is written even when it equals the fill value: a shard's chunks then always exist, which
# keeps fsync simple and makes "same content" checks exact.
_WRITE_CONFIG = {"write_empty_chunks": True}
# Chunk keys "c.<i>.0.0.0": all chunks of an array in one directory, so a shard's new files need one
# directory fsync per array instead of one per nesting level.
_CHUNK_KEYS = {"name": "default", "separator": "."}


def sample_dim_names(sample_shape: tuple[int, ...]) -> tuple[str, ...]:
    """Dimension names of one input, so xarray can label the axes."""
    if len(sample_shape) == 3:
        return ("channel", "height", "width")
    if len(sample_shape) == 2:
        return ("height", "width")
    if len(sample_shape) == 1:
        return ("feature",)
    return tuple(f"dim_{i}" for i in range(len(sample_shape)))


def _compressors(compression: str) -> tuple[BloscCodec, ...] | None:
    # Float mantissas are noise; what compresses is the sign/exponent bits, which bit-shuffle lines up.
    # lz4 runs at ~600 MB/s per core for ~10% saving, zstd-1 at ~200 MB/s for a few % more.
    if compression == "lz4":
        return (BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle"),)
    if compression == "zstd":
        return (BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle"),)
    return None


def array_plan(spec: AuditSpec) -> dict[str, dict[str, Any]]:
    """Shape, dtype, chunks, fill value and dimension names of every array the spec asks for."""
    n, chunk = spec.n_samples, spec.resolved_chunk_size
    sdims = sample_dim_names(spec.sample_shape)
    kdims = ("explanation",) if spec.k > 1 else ()
    plan: dict[str, dict[str, Any]] = {
        RELEVANCE: {
            "shape": (n, *spec.relevance_row_shape),
            "dtype": spec.dtype,
            "fill_value": float("nan"),
            "dims": ("sample", *kdims, *sdims),
        },
        LOGITS: {
            "shape": (n, spec.n_classes),
            "dtype": "float32",
            "fill_value": float("nan"),
            "dims": ("sample", "class"),
        },
        TARGET: {
            "shape": (n, *spec.target_row_shape),
            "dtype": "int64",
            "fill_value": -1,
            "dims": ("sample", *kdims),
        },
    }
    if spec.keep_input:
        in_dtype = np.dtype(spec.input_dtype)
        plan[INPUT] = {
            "shape": (n, *spec.sample_shape),
            "dtype": str(in_dtype),
            "fill_value": float("nan") if in_dtype.kind == "f" else 0,
            "dims": ("sample", *sdims),
        }
    if spec.n_concepts:
        plan[CONCEPTS] = {
            "shape": (n, spec.n_concepts, *spec.sample_shape),
            "dtype": spec.dtype,
            "fill_value": float("nan"),
            "dims": ("sample", "concept", *sdims),
        }
        plan[CONCEPT_CHANNELS] = {
            "shape": (n, spec.n_concepts),
            "dtype": "int64",
            "fill_value": -1,
            "dims": ("sample", "concept"),
        }
        plan[CONCEPT_RELEVANCE] = {
            "shape": (n, spec.n_concepts),
            "dtype": "float32",
            "fill_value": float("nan"),
            "dims": ("sample", "concept"),
        }
    for name, layer_shape in spec.layerwise.items():
        # Dimension names carry the layer name: layers differ in size, and xarray needs one size per name.
        plan[layerwise_key(name)] = {
            "shape": (n, *spec.layerwise_row_shape(name)),
            "dtype": spec.dtype,
            "fill_value": float("nan"),
            "dims": ("sample", *kdims, *(f"{name}.{d}" for d in sample_dim_names(layer_shape))),
        }
    for name in spec.metrics:
        plan[metric_key(name)] = {
            "shape": (n, *spec.metric_row_shape(name)),
            "dtype": "float32",
            "fill_value": float("nan"),
            "dims": ("sample", *kdims, f"{name}.step"),
        }
    for entry in plan.values():
        entry["chunks"] = (chunk, *entry["shape"][1:])
    return plan


def _build_group(path: str, spec: AuditSpec, attrs: Mapping[str, Any]) -> None:
    group = zarr.open_group(path, mode="w-", zarr_format=3, attributes=dict(attrs))
    compressors = _compressors(spec.compression)
    if spec.layerwise:
        group.create_group(LAYERWISE)
    if spec.metrics:
        group.create_group(METRICS)
    for name, entry in array_plan(spec).items():
        parent, _, leaf = name.rpartition("/")
        (group[parent] if parent else group).create_array(
            leaf,
            shape=entry["shape"],
            dtype=entry["dtype"],
            chunks=entry["chunks"],
            fill_value=entry["fill_value"],
            compressors=compressors,
            dimension_names=entry["dims"],
            chunk_key_encoding=_CHUNK_KEYS,
        )
    if spec.n_concepts:
        ids = np.asarray(spec.resolved_concept_ids, dtype=np.int64)
        arr = group.create_array(
            CONCEPT_IDS,
            shape=ids.shape,
            dtype="int64",
            chunks=ids.shape,
            fill_value=-1,
            compressors=None,
            dimension_names=("concept",),
        )
        arr[:] = ids
    # metadata is never rewritten after creation, so consolidating it once keeps it true; readers
    # (xr.open_zarr included) then open the group from one file, without a warning
    with warnings.catch_warnings():  # "not part of the v3 spec yet": zarr and xarray both read it
        warnings.filterwarnings("ignore", category=ZarrUserWarning)
        zarr.consolidate_metadata(path, zarr_format=3)


def create_group_atomically(root: str, spec: AuditSpec, attrs: Mapping[str, Any]) -> bool:
    """Create ``<root>/relevance.zarr`` unless it exists; True when this call created it.

    The group is built and fsynced under a hidden name, then renamed: a reader or a second creator sees
    no group or a complete one. If another process won the race, our copy is discarded."""
    final = os.path.join(root, RELEVANCE_ZARR)
    if os.path.exists(os.path.join(final, "zarr.json")):
        return False
    tmp = os.path.join(root, f".{RELEVANCE_ZARR}.{uuid.uuid4().hex}{TMP_SUFFIX}")
    try:
        _build_group(tmp, spec, attrs)
        fsync_tree(tmp)
        try:
            os.rename(tmp, final)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return False  # another writer created it first; its group is the audit
            raise
        fsync_path(root)
        return True
    finally:
        if os.path.lexists(tmp):  # our own hidden copy: only the files the group build wrote
            files, dirs, _ = zarr_tree(root, os.path.basename(tmp))
            remove_owned(root, files, dirs)


def read_group_attrs(zarr_path: str) -> dict[str, Any]:
    """The group attributes (config, digests, layout, versions) of an existing audit."""
    try:
        group = zarr.open_group(zarr_path, mode="r", zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise NotAnAuditError(f"no audit Zarr group at {zarr_path}") from exc
    return dict(group.attrs)


class _ChunkEncoder:
    """Encodes one whole chunk exactly as the array's codecs do: C-order little-endian bytes, then Blosc
    if the array has it (parameters from the array metadata, so an existing audit keeps its own)."""

    def __init__(self, dtype: np.dtype, blosc: numcodecs.Blosc | None) -> None:
        self.dtype = dtype
        self.blosc = blosc

    @classmethod
    def for_array(cls, arr: Any) -> _ChunkEncoder | None:
        """An encoder for ``arr``, or None when its codecs are anything else (Zarr then writes)."""
        meta = arr.metadata
        if getattr(meta, "zarr_format", None) != 3 or getattr(meta, "storage_transformers", ()):
            return None
        if not isinstance(meta.chunk_grid, RegularChunkGrid):
            return None
        dtype = np.dtype(arr.dtype)
        codecs = tuple(meta.codecs)
        if not codecs or not isinstance(codecs[0], BytesCodec) or dtype.kind not in "fiu":
            return None
        endian = codecs[0].endian
        if dtype.itemsize > 1 and (endian is None or endian.value != sys.byteorder):
            return None
        if len(codecs) == 1:
            return cls(dtype, None)
        blosc = codecs[1]
        if len(codecs) != 2 or not isinstance(blosc, BloscCodec) or blosc.shuffle is None:
            return None
        shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[blosc.shuffle.value]
        return cls(
            dtype,
            numcodecs.Blosc(
                cname=blosc.cname.value,
                clevel=blosc.clevel,
                shuffle=shuffle,
                blocksize=blosc.blocksize,
                typesize=blosc.typesize,
            ),
        )

    def encode(self, values: np.ndarray) -> Any:
        data = np.ascontiguousarray(values, dtype=self.dtype)
        return self.blosc.encode(data) if self.blosc is not None else memoryview(data).cast("B")


def _create_exclusively(path: str, payload: Any) -> bool:
    """Write ``payload`` to a new file ``path``; False (nothing written) when the file already exists."""
    try:
        f = open(path, "xb")
    except FileExistsError:
        return False
    except FileNotFoundError:  # '/'-separated chunk keys: the nested directories are new
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return _create_exclusively(path, payload)
    with f:
        f.write(payload)
    return True


class RelevanceArrays:
    """Open handles on the sample arrays, writing whole chunks of one shard at a time."""

    def __init__(self, zarr_path: str, spec: AuditSpec) -> None:
        self.zarr_path = zarr_path
        group = zarr.open_group(zarr_path, mode="r+", zarr_format=3)
        self.arrays: dict[str, Any] = {}
        self._encoders: dict[str, _ChunkEncoder | None] = {}
        for name, entry in array_plan(spec).items():
            try:
                arr = group[name]
            except KeyError as exc:
                raise AuditStoreError(f"audit Zarr group {zarr_path} lacks array {name!r}") from exc
            if tuple(arr.shape) != entry["shape"] or tuple(arr.chunks) != entry["chunks"]:
                raise AuditStoreError(
                    f"array {name!r} in {zarr_path} has shape {arr.shape} chunks {arr.chunks}, "
                    f"the spec expects shape {entry['shape']} chunks {entry['chunks']}"
                )
            self.arrays[name] = arr.with_config(_WRITE_CONFIG)
            self._encoders[name] = _ChunkEncoder.for_array(arr)
        self.chunk = spec.resolved_chunk_size
        self.n_samples = spec.n_samples

    def write(
        self,
        start: int,
        stop: int,
        data: Mapping[str, np.ndarray],
        staging: str,
        on_written: Callable[[str], None] | None = None,
    ) -> tuple[list[str], list[tuple[str, str]], dict[str, dict[str, int]]]:
        """Encode ``data[name]`` (rows ``start:stop`` of each array) into chunk files.

        A chunk file that does not exist yet is created in place (exclusively: ``O_EXCL``); one that
        exists (a re-write) is written to a temporary under ``staging`` which :meth:`publish` renames
        over it once fsynced. A chunk file is therefore never rewritten in place: a reader sees the old
        chunk or the new one, never a torn one. Returns the new chunk files and their directories (to
        fsync), the (temporary, final path) pairs to publish, and the size and CRC-32 of every chunk
        file by store key (recorded at commit, checked by ``verify``). ``on_written(path)`` is called for
        each file as soon as it is complete (to start its fsync while the next chunk is encoded).
        ``start`` must sit on a chunk boundary and ``stop`` on one or at the end of the arrays; the
        caller (the store) guarantees it by only accepting planned shards."""
        created: list[str] = []
        staged: list[tuple[str, str]] = []
        checks: dict[str, dict[str, int]] = {}
        for name, values in data.items():
            encoder = self._encoders[name]
            files = []
            for key, lo, hi in self._chunks(name, start, stop):
                path = os.path.join(self.zarr_path, *key.split("/"))
                rows = values[lo - start : hi - start]
                if encoder is None:  # codecs we do not mirror (never created by this store): Zarr writes
                    self.arrays[name][lo:hi] = rows
                    with open(path, "rb") as f:
                        payload = f.read()
                    written = path
                    files.append(path)
                else:
                    if hi - lo < self.chunk:  # the short last chunk: padded with the fill value, as Zarr does
                        padded = np.full((self.chunk, *rows.shape[1:]), self.arrays[name].fill_value, encoder.dtype)
                        padded[: hi - lo] = rows
                        rows = padded
                    payload = encoder.encode(rows)
                    if _create_exclusively(path, payload):
                        written = path
                        files.append(path)
                    else:
                        written = write_hidden(path, payload, staging)
                        staged.append((written, path))
                if on_written is not None:
                    on_written(written)
                # zlib's CRC-32 reads the encoded buffer as it is (google-crc32c would need a copy of an
                # uncompressed chunk, which costs more than it saves)
                checks[key] = {"bytes": memoryview(payload).nbytes, "crc32": zlib.crc32(payload)}
            created += files + parent_dirs(files, stop_at=os.path.join(self.zarr_path, *name.split("/")))
        return created, staged, checks

    @staticmethod
    def publish(staged: list[tuple[str, str]]) -> list[str]:
        """Rename fsynced chunk temporaries over the chunks they replace; returns the directories to fsync."""
        dirs: dict[str, None] = {}
        for tmp, path in staged:
            replace_into(tmp, path)
            dirs[os.path.dirname(path)] = None
        return list(dirs)

    def _chunks(self, name: str, start: int, stop: int) -> list[tuple[str, int, int]]:
        """(store key, first row, end row) of each chunk holding rows ``start:stop`` of ``name``."""
        arr = self.arrays[name]
        tail = (0,) * (arr.ndim - 1)
        first, last = start // self.chunk, (stop - 1) // self.chunk
        return [
            (
                f"{name}/{arr.metadata.encode_chunk_key((c, *tail))}",
                max(start, c * self.chunk),
                min(stop, (c + 1) * self.chunk, self.n_samples),
            )
            for c in range(first, last + 1)
        ]

    def chunk_keys(self, name: str, start: int, stop: int) -> list[str]:
        """Store keys (relative to the group) of the chunks holding rows ``start:stop`` of ``name``."""
        return [key for key, _, _ in self._chunks(name, start, stop)]
