"""Samples from NumPy files: a memory-mapped ``.npy``, or one member of a ``.npz`` archive.

A ``.npz`` member is never loaded whole: an uncompressed member (``np.savez``) is memory-mapped
inside the archive, a compressed one (``np.savez_compressed``) is streamed up to the rows a shard
needs (correct, but each shard re-reads the stream from the start: prefer ``.npy`` or Zarr for
large compressed data).
"""

from __future__ import annotations

import math
import struct
import zipfile
from pathlib import Path

import numpy as np

from lrp_tasks.config.dataset_spec import ArraySpec, Preprocessing
from lrp_tasks.config.io import resolve_path

from .base import DatasetSource, fingerprint
from .errors import DatasetError


class RowReader:
    """Rows ``start..stop-1`` of an ``.npy`` file or ``.npz`` member, without reading the rest."""

    def __init__(self, path: Path, member: str | None = None) -> None:
        self.path, self.member = path, member
        if member is None:
            with open(path, "rb") as handle:
                self.shape, self.dtype, header_end = _read_header(handle, str(path))
            self.data_offset = header_end
            self.stored = True
        else:
            with zipfile.ZipFile(path) as archive:
                info = archive.getinfo(member + ".npy")
                with archive.open(info) as handle:
                    self.shape, self.dtype, header_end = _read_header(handle, f"{path}:{member}")
                self.stored = info.compress_type == zipfile.ZIP_STORED
                self.data_offset = header_end + (_member_data_start(path, info) if self.stored else 0)
        self.row_shape = self.shape[1:]
        self.row_bytes = self.dtype.itemsize * math.prod(self.row_shape)
        self._handle_map: np.memmap | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if k != "_handle_map"} | {"_handle_map": None}

    def read(self, start: int, stop: int) -> np.ndarray:
        if self.stored:
            if self._handle_map is None:
                if self.member is None:
                    self._handle_map = np.load(self.path, mmap_mode="r")
                else:
                    self._handle_map = np.memmap(
                        self.path, dtype=self.dtype, mode="r", offset=self.data_offset, shape=self.shape
                    )
            return np.array(self._handle_map[start:stop])
        with zipfile.ZipFile(self.path) as archive, archive.open(self.member + ".npy") as handle:
            handle.seek(self.data_offset + start * self.row_bytes)
            raw = handle.read((stop - start) * self.row_bytes)
        return np.frombuffer(raw, dtype=self.dtype).reshape((stop - start, *self.row_shape))


def _read_header(handle: object, name: str) -> tuple[tuple[int, ...], np.dtype, int]:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(handle)
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran_order, dtype = read(handle)
    except ValueError as exc:
        raise DatasetError(f"{name} is not a valid .npy array: {exc}") from exc
    if dtype.hasobject:
        raise DatasetError(f"{name} holds Python objects; only numeric arrays are read (no pickles)")
    if fortran_order and len(shape) > 1:
        raise DatasetError(f"{name} is stored in Fortran order; save it C-contiguous (np.ascontiguousarray)")
    return tuple(shape), dtype, handle.tell()  # type: ignore[attr-defined]


def _member_data_start(path: Path, info: zipfile.ZipInfo) -> int:
    """Offset of an uncompressed member's bytes in the archive (after its local file header)."""
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        header = handle.read(30)
    signature, *_, name_len, extra_len = struct.unpack("<4s2B4HL2L2H", header)
    if signature != b"PK\x03\x04":
        raise DatasetError(f"{path}: corrupt zip entry {info.filename}")
    return info.header_offset + 30 + name_len + extra_len


class ArraySource(DatasetSource):
    """Sample ``i`` is row ``i`` of the array; its id is ``str(i)``."""

    kind = "array"

    def __init__(
        self, spec: ArraySpec, preprocessing: Preprocessing | None = None, root: str | Path | None = None
    ) -> None:
        super().__init__(preprocessing)
        self.spec = spec
        path = resolve_path(spec.path, root)
        if not path.is_file():
            raise DatasetError(f"array file not found: {spec.path} (resolved to {path.absolute()})")
        self.samples = RowReader(path, self._member(path))
        if len(self.samples.shape) < 2:
            raise DatasetError(f"{spec.path}: samples need at least 2 dimensions (n, ...), got {self.samples.shape}")
        if not np.issubdtype(self.samples.dtype, np.number) and self.samples.dtype != np.bool_:
            raise DatasetError(f"{spec.path}: samples must be numeric, got dtype {self.samples.dtype}")
        self.labels: RowReader | None = None
        if spec.labels is not None:
            self.labels = self._labels(RowReader(path, self._check_member(path, spec.labels)), spec.labels)
        elif spec.labels_path is not None:
            labels_path = resolve_path(spec.labels_path, root)
            if not labels_path.is_file():
                raise DatasetError(f"labels file not found: {spec.labels_path} (resolved to {labels_path.absolute()})")
            self.labels = self._labels(RowReader(labels_path), spec.labels_path)
        self.sample_shape = tuple(self.samples.shape[1:])
        self.ignore_label = spec.ignore_label
        stat = path.stat()
        self.dataset_id = "array:{}@{}".format(
            path.name + (f":{self.samples.member}" if self.samples.member else ""),
            fingerprint(
                "array",
                spec.model_dump(exclude={"path", "labels_path"}),
                [path.name, stat.st_size, self.samples.shape, str(self.samples.dtype)],
                _edges(path),
                self.preprocessing.model_dump(),
            ),
        )

    def _member(self, path: Path) -> str | None:
        if path.suffix.lower() != ".npz":
            return None
        if self.spec.array is not None:
            return self._check_member(path, self.spec.array)
        members = _members(path)
        candidates = [m for m in members if m != self.spec.labels]
        if len(candidates) != 1:
            raise DatasetError(f"{self.spec.path} holds arrays {', '.join(members)}: name one with dataset.array")
        return candidates[0]

    def _check_member(self, path: Path, name: str) -> str:
        members = _members(path)
        if name not in members:
            raise DatasetError(f"{self.spec.path} has no array {name!r} (it holds {', '.join(members)})")
        return name

    def _labels(self, reader: RowReader, name: str) -> RowReader:
        if len(reader.shape) != 1 or len(reader) != len(self.samples):
            raise DatasetError(
                f"labels {name} must be a 1-d array of {len(self.samples)} entries, got shape {reader.shape}"
            )
        if not np.issubdtype(reader.dtype, np.integer):
            raise DatasetError(f"labels {name} must be integers, got dtype {reader.dtype}")
        return reader

    def __len__(self) -> int:
        return len(self.samples)

    def _all_labels(self) -> np.ndarray | None:
        return None if self.labels is None else self.labels.read(0, len(self.labels))

    def _read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        x = self.samples.read(start, stop)
        labels = self.labels.read(start, stop) if self.labels is not None else np.full(stop - start, -1)
        return x, labels, [str(i) for i in range(start, stop)]


def _members(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return [name.removesuffix(".npy") for name in archive.namelist() if name.endswith(".npy")]


def _edges(path: Path, size: int = 1 << 16) -> str:
    """sha256 of the first and last 64 KiB: a cheap content check for the dataset id."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(size))
        handle.seek(max(0, path.stat().st_size - size))
        digest.update(handle.read(size))
    return digest.hexdigest()
