"""Durable local writes: hidden temporaries, fsync, atomic rename.

A killed process leaves the old state or the new one, never a torn file; fsync extends that to a
machine crash. Several fsyncs are issued at once from a small thread pool: fsync releases the GIL and the
filesystem can commit them together, so a shard's dozen fsyncs cost about one disk flush.
:class:`BackgroundSync` starts each file's fsync as soon as the file is written, so the disk works while
the next chunk is being encoded.

The pool is fork-safe: a forked child gets a fresh pool (the parent's threads do not exist in the
child, and submitting to the inherited pool would wait forever).
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from typing import Any

from .layout import tmp_name

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _reset_after_fork() -> None:
    global _POOL, _POOL_LOCK
    _POOL = None
    _POOL_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="lrp-audit-fsync")
        return _POOL


def fsync_path(path: str) -> None:
    """fsync a file or a directory (a directory's fsync makes a rename or a new entry durable)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if os.path.isdir(path) else os.O_RDONLY
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_many(paths: Iterable[str]) -> None:
    """fsync every path (files or directories) concurrently; returns when all are durable."""
    unique = list(dict.fromkeys(paths))
    if len(unique) <= 1:
        for p in unique:
            fsync_path(p)
        return
    list(_pool().map(fsync_path, unique))  # list() re-raises the first error


class BackgroundSync:
    """fsyncs paths in the pool as they are handed in; :meth:`wait` returns when all are durable.

    Each path is synced once, after it was handed in; hand a directory in only once every new entry in
    it exists (its fsync covers the entries present at that moment)."""

    def __init__(self) -> None:
        self._futures: dict[str, Future[None]] = {}

    def add(self, path: str) -> None:
        if path not in self._futures:
            self._futures[path] = _pool().submit(fsync_path, path)

    def add_many(self, paths: Iterable[str]) -> None:
        for path in paths:
            self.add(path)

    def wait(self) -> None:
        """Block until every fsync finished; re-raises the first error (after all have finished)."""
        futures = list(self._futures.values())
        wait_all(futures)
        for future in futures:
            future.result()


def parent_dirs(files: Iterable[str], stop_at: str) -> list[str]:
    """Each directory between ``files`` and ``stop_at`` (inclusive), once: new entries in them need
    the directory fsynced to survive a crash."""
    stop = os.path.abspath(stop_at)
    dirs: dict[str, None] = {}
    for f in files:
        d = os.path.dirname(os.path.abspath(f))
        while d not in dirs and (d == stop or d.startswith(stop + os.sep)):
            dirs[d] = None
            if d == stop:
                break
            d = os.path.dirname(d)
    return list(dirs)


def fsync_tree(root: str) -> None:
    """fsync every file and directory under ``root`` (used once, when a new Zarr group is created)."""
    paths = []
    for dirpath, _dirnames, filenames in os.walk(root):
        paths.extend(os.path.join(dirpath, name) for name in filenames)
        paths.append(dirpath)
    fsync_many(paths)


def write_hidden(path: str, data: Any, tmp_dir: str | None = None) -> str:
    """Write ``data`` under a hidden temporary name (not fsynced) in ``tmp_dir`` (same filesystem as
    ``path``; default: next to it); returns that name, to be renamed to ``path``."""
    directory, name = os.path.split(path)
    tmp = os.path.join(tmp_dir or directory, tmp_name(name, uuid.uuid4().hex))
    try:
        f = open(tmp, "wb")
    except FileNotFoundError:
        os.makedirs(os.path.dirname(tmp), exist_ok=True)
        f = open(tmp, "wb")
    try:
        with f:
            f.write(data)
    except BaseException as exc:  # a full disk: no torn temporary left behind, and the error names the file
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:
            raise OSError(exc.errno, exc.strerror, path) from exc
        raise
    return tmp


def replace_into(tmp: str, path: str) -> None:
    """Atomically move a finished temporary to its final name (creating the directory if needed)."""
    try:
        os.replace(tmp, path)
    except FileNotFoundError:
        if not os.path.exists(tmp):
            raise
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.replace(tmp, path)


def atomic_write_bytes(path: str, data: bytes, sync_dir: bool = True, tmp_dir: str | None = None) -> None:
    """Write ``data`` to ``path`` via a hidden temporary, fsync, rename (and fsync the directory).

    Readers see the old file, no file, or the whole new file, never a torn one. ``sync_dir=False``
    leaves the rename itself to the next journal commit: for files that can be rebuilt if lost."""
    tmp = write_hidden(path, data, tmp_dir)
    try:
        fsync_path(tmp)
        replace_into(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if sync_dir:
        fsync_path(os.path.dirname(path))
