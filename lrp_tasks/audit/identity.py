"""What makes an audit store's identity: the config without its result-neutral fields (one list,
:data:`RESULT_NEUTRAL_FIELDS`), the model weights' digest and a fingerprint of the dataset's content.

The dataset fingerprint is the sha256 of the files the reader reads (the ``.npy``/``.npz`` file and
labels, every image of an image folder, every file of a local Zarr group), with their names relative
to the dataset; a file's digest is cached in the store's ``cache/`` directory by (size, mtime, ctime,
inode, device, digest of three sampled blocks), so a resumed run re-hashes only files that changed, and
a file rewritten in place with its size and mtime preserved is re-hashed (its ctime moved). Moving the
dataset (or the store) keeps the fingerprint; replacing a file changes it. Datasets without local files
(the built-in digits, a remote Zarr URL) are fingerprinted by their description (``dataset_id``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lrp_tasks.config import AuditConfig, config_digest
from lrp_tasks.sources.arrays import ArraySource
from lrp_tasks.sources.base import DatasetSource
from lrp_tasks.sources.images import ImageFolderSource
from lrp_tasks.sources.zarr_array import ZarrSource

RESULT_NEUTRAL_FIELDS: tuple[str, ...] = (
    "output",
    "ray",
    "retries",
    "batch_size",
    "analysis",
    "model.path",
    "model.weights",
    "model.module_dir",
    "dataset.path",
    "dataset.labels_path",
)
"""Config fields (dotted paths) that say where and with what resources an audit runs, not what it
computes: left out of the config digest, so a store resumes with them changed.

* ``output``: where the store is (a moved store resumes);
* ``ray`` (workers, CPUs and GPUs per worker, address), ``retries``: resources and fault tolerance;
* ``batch_size``: batching changes results only by float round-off (docs/store.md says how much);
* ``analysis``: SpRAy runs after the shards and keeps its own digest in ``analysis/spray``;
* ``model.path``, ``model.weights``, ``dataset.path``, ``dataset.labels_path``: file locations, whose
  *contents* are part of the identity instead (the weights digest, the dataset fingerprint), so moving
  the files resumes and replacing them is refused;
* ``model.module_dir``: where a builder's module is imported from (the config file's directory when not
  given), so moving the project resumes. A builder's code is not fingerprinted, moved or edited in place
  (its weights are).

This is the only list: the digest a run records, the store's check on resume and the fields it names
when refusing all use it."""


def audit_digest(cfg: AuditConfig | Mapping[str, Any]) -> str:
    """The config digest an audit store records and checks on resume: the config without
    :data:`RESULT_NEUTRAL_FIELDS`."""
    return config_digest(cfg, RESULT_NEUTRAL_FIELDS)


CACHE_FILE = "file-digests.json"
#: Files listed by name in the fingerprint (to name the ones that changed); larger datasets give a count.
MAX_LISTED_FILES = 200


def dataset_files(source: DatasetSource) -> list[tuple[str, Path]]:
    """(name relative to the dataset, local path) of every file the source reads; [] when none are local."""
    if isinstance(source, ArraySource):
        files = [(source.samples.path.name, source.samples.path)]
        if source.labels is not None and source.labels.path != source.samples.path:
            files.append((f"labels:{source.labels.path.name}", source.labels.path))
        return files
    if isinstance(source, ImageFolderSource):
        return [(rel, source.folder / rel) for rel in source.files]
    if isinstance(source, ZarrSource) and "://" not in source.location:
        root = Path(source.location)
        return sorted(
            (p.relative_to(root).as_posix(), p) for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")
        )
    return []


def dataset_fingerprint(source: DatasetSource, cache_dir: str | None = None) -> dict[str, Any]:
    """``{"id", "digest", "files"}``: the content fingerprint of what ``source`` reads (see module doc).
    ``files`` maps each file to its digest when there are at most MAX_LISTED_FILES of them."""
    files = dataset_files(source)
    cache = _Cache(cache_dir)
    digests = {name: cache.digest(path) for name, path in files}
    cache.save()
    description = source.dataset_id.split("@", 1)[0]
    total = hashlib.sha256(description.encode())
    for name in sorted(digests):
        total.update(f"\n{name}\0{digests[name]}".encode())
    if not files:  # no local files: the description and its own fingerprint are all there is
        total.update(source.dataset_id.encode())
    out: dict[str, Any] = {"id": source.dataset_id, "digest": total.hexdigest(), "n_files": len(files)}
    if len(files) <= MAX_LISTED_FILES:
        out["files"] = digests
    return out


def hash_file(path: Path) -> str:
    """sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


#: Bytes read at each of the start, middle and end of a file to check a cached digest (see _Cache).
SAMPLE_BLOCK = 64 * 1024


def sampled_digest(path: Path, size: int) -> str:
    """sha256 of three blocks (start, middle, end) of a file: a cheap content check for the cache."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for offset in sorted({0, max(0, size // 2 - SAMPLE_BLOCK // 2), max(0, size - SAMPLE_BLOCK)}):
            f.seek(offset)
            h.update(f.read(SAMPLE_BLOCK))
    return h.hexdigest()


class _Cache:
    """Digests of files by absolute path, valid while size, mtime, *ctime*, inode, device and a digest of
    three sampled blocks stay the same.

    The ctime is what makes the key hold against a rewrite in place: on Linux (and every POSIX
    filesystem) any write, ``utime`` or rename sets it to now, and no unprivileged call can set it back,
    so ``cp -p``, ``touch -r`` or an archive extracted with preserved times all miss the cache and are
    re-hashed. The sampled blocks add a content check for filesystems whose ctime is coarse or copied
    (some network mounts)."""

    def __init__(self, cache_dir: str | None) -> None:
        self.path = os.path.join(cache_dir, CACHE_FILE) if cache_dir else None
        self.entries: dict[str, Any] = {}
        self.dirty = False
        if self.path:
            with contextlib.suppress(OSError, ValueError):
                with open(self.path, encoding="utf-8") as f:
                    loaded = json.load(f)
                if isinstance(loaded, dict):
                    self.entries = loaded

    def digest(self, path: Path) -> str:
        st = path.stat()
        key = str(path.absolute())
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]
        entry = self.entries.get(key)
        if isinstance(entry, dict) and entry.get("stamp") == stamp and entry.get("digest"):
            if entry.get("sampled") == sampled_digest(path, st.st_size):
                return str(entry["digest"])
        digest = hash_file(path)  # older entries (a list, without ctime) are never trusted
        self.entries[key] = {"stamp": stamp, "sampled": sampled_digest(path, st.st_size), "digest": digest}
        self.dirty = True
        return digest

    def save(self) -> None:
        if not (self.path and self.dirty):
            return
        directory = os.path.dirname(self.path)
        tmp = os.path.join(directory, f".{CACHE_FILE}.{uuid.uuid4().hex}.tmp")
        with contextlib.suppress(OSError):  # a cache: losing it costs time, not correctness
            os.makedirs(directory, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(self.entries, f)
            os.replace(tmp, self.path)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
