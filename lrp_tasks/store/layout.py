"""Names on disk and the sample -> shard -> chunk plan; the one place that knows the audit directory layout.

An audit directory::

    <audit>/lrp-audit.json             marker: this directory is an audit store (written first, never changed)
    <audit>/lrp-audit.lock             the writer lock (holder host/pid/start time/run token)
    <audit>/relevance.zarr/            Zarr v3 group (arrays + provenance attrs), created once, atomically
    <audit>/summaries/part-000042.parquet   one Parquet part per committed shard (visible == committed)
    <audit>/manifest/shard-000042.json      commit record of shard 42 (checksums, range, writer)
    <audit>/staging/                   temporaries of the running writer (emptied when a run takes the lock)
    <audit>/cache/                     digests of dataset files by (size, mtime, ctime, inode, sampled blocks)

``summaries/`` holds Parquet parts only: temporaries live in ``staging/``, so
``pd.read_parquet(<audit>/summaries)`` always reads.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

FORMAT_VERSION = 1
MARKER_FILE = "lrp-audit.json"
LOCK_FILE = "lrp-audit.lock"
RELEVANCE_ZARR = "relevance.zarr"
SUMMARIES_DIR = "summaries"
MANIFEST_DIR = "manifest"
STAGING_DIR = "staging"
CACHE_DIR = "cache"
#: The audit's HTML report (written by ``lrp-audit report``; removed with the audit by --fresh).
REPORT_FILE = "report.html"
#: Entries of an audit directory that the store creates (and may remove on overwrite).
STORE_ENTRIES = (MARKER_FILE, LOCK_FILE, RELEVANCE_ZARR, SUMMARIES_DIR, MANIFEST_DIR, STAGING_DIR, CACHE_DIR)
TMP_SUFFIX = ".tmp"
SHARD_DIGITS = 6

_PART_RE = re.compile(r"^part-(\d+)\.parquet$")
_RECORD_RE = re.compile(r"^shard-(\d+)\.json$")

# Chunks of a few MiB compress well and keep one heatmap read cheap; the default chunk size is the
# largest divisor of the shard size whose biggest per-chunk array stays under this budget.
DEFAULT_CHUNK_BYTES = 8 * 1024 * 1024
#: A shard is computed in one worker's memory and committed as one unit; beyond this it is a typo.
MAX_SHARD_SIZE = 1 << 20


def part_name(shard_id: int) -> str:
    """File name of a shard's committed Parquet part."""
    return f"part-{shard_id:0{SHARD_DIGITS}d}.parquet"


def record_name(shard_id: int) -> str:
    """File name of a shard's commit record."""
    return f"shard-{shard_id:0{SHARD_DIGITS}d}.json"


def tmp_name(final_name: str, token: str) -> str:
    """Hidden temporary name next to ``final_name``: the leading '.' keeps readers from listing it."""
    return f".{final_name}.{token}{TMP_SUFFIX}"


def tmp_prefix(final_name: str) -> str:
    """Prefix shared by all temporaries of ``final_name`` (to clean the leftovers of a killed writer)."""
    return f".{final_name}."


def parse_part_name(name: str) -> int | None:
    """Shard id of a committed part file name, None for anything else (temporaries included)."""
    m = _PART_RE.match(name)
    return int(m.group(1)) if m else None


def parse_record_name(name: str) -> int | None:
    """Shard id of a commit record file name, None for anything else."""
    m = _RECORD_RE.match(name)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class AuditLayout:
    """Paths of one audit directory (local path or fsspec URL; joined with '/')."""

    root: str

    def _join(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    @property
    def zarr_path(self) -> str:
        return self._join(RELEVANCE_ZARR)

    @property
    def summaries_dir(self) -> str:
        return self._join(SUMMARIES_DIR)

    @property
    def marker_path(self) -> str:
        return self._join(MARKER_FILE)

    @property
    def lock_path(self) -> str:
        return self._join(LOCK_FILE)

    @property
    def staging_dir(self) -> str:
        return self._join(STAGING_DIR)

    @property
    def cache_dir(self) -> str:
        return self._join(CACHE_DIR)

    @property
    def manifest_dir(self) -> str:
        return self._join(MANIFEST_DIR)

    def part_path(self, shard_id: int) -> str:
        return self._join(SUMMARIES_DIR, part_name(shard_id))

    def record_path(self, shard_id: int) -> str:
        return self._join(MANIFEST_DIR, record_name(shard_id))


def plan_shards(n_samples: int, shard_size: int) -> list[tuple[int, int, int]]:
    """Split ``range(n_samples)`` into ``(shard_id, start, stop)``; deterministic, so every run and every
    worker agrees on which samples a shard id means. Only the last shard may be short."""
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    if shard_size > MAX_SHARD_SIZE:
        raise ValueError(shard_size_message(shard_size))
    return [(i, start, min(start + shard_size, n_samples)) for i, start in enumerate(range(0, n_samples, shard_size))]


def default_chunk_size(shard_size: int, bytes_per_sample: int, budget: int = DEFAULT_CHUNK_BYTES) -> int:
    """Largest divisor of ``shard_size`` whose chunk fits ``budget`` bytes, found in O(sqrt(shard_size)).

    A divisor, so that every shard is made of whole chunks and two writers never share a chunk. When the
    divisors only give chunks far below the budget (a prime shard size gives chunks of 1 sample, one
    file per sample), the whole shard is one chunk if that stays under ``4 * budget``; otherwise the
    shard size is refused with a suggestion."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    if shard_size > MAX_SHARD_SIZE:
        raise ValueError(shard_size_message(shard_size))
    fits = max(1, budget // max(1, bytes_per_sample))
    if shard_size <= fits:
        return shard_size
    best = 1
    d = 1
    while d * d <= shard_size:
        if shard_size % d == 0:
            for c in (d, shard_size // d):
                if best < c <= fits:
                    best = c
        d += 1
    if best * 4 >= fits:
        return best
    if shard_size * bytes_per_sample <= 4 * budget:
        return shard_size
    nice = fits * max(1, round(shard_size / fits))
    raise ValueError(
        f"shard_size {shard_size} only splits into chunks of {best} sample(s) (its divisors), far below the "
        f"{fits} samples that fit a {budget // (1024 * 1024)} MiB chunk, and the whole shard "
        f"({shard_size * bytes_per_sample / 2**20:.0f} MiB) is too large for one chunk; use a shard_size "
        f"with a divisor near {fits}, e.g. {nice}"
    )


def shard_size_message(shard_size: int) -> str:
    return (
        f"shard_size {shard_size} exceeds the limit of {MAX_SHARD_SIZE} samples: a shard is explained in one "
        "worker's memory and committed as one unit; use a few hundred to a few thousand samples"
    )


def local_path(path: str | os.PathLike[str]) -> str | None:
    """The local filesystem path of ``path`` ('file://' URLs included), None for remote URLs."""
    s = os.fspath(path)
    if s.startswith("file://"):
        return s[len("file://") :]
    if "://" in s:
        return None
    return s
