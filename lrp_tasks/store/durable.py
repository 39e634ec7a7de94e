"""Durable local writes: fsync + atomic rename, so a killed writer leaves either the old state or the new."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterable

from .layout import tmp_name, tmp_prefix


def fsync_path(path: str) -> None:
    """fsync a file or a directory (a directory's fsync makes a rename or a new entry durable)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if os.path.isdir(path) else os.O_RDONLY
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: str) -> None:
    """fsync every file and directory under ``root`` (used once, when a new Zarr group is created)."""
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            fsync_path(os.path.join(dirpath, name))
        fsync_path(dirpath)


def fsync_files_and_dirs(files: Iterable[str], stop_at: str) -> None:
    """fsync ``files`` and each directory between them and ``stop_at`` (inclusive), each once.

    New chunk files can sit in new directories; their entries are only durable once the parents are
    fsynced too."""
    dirs: set[str] = set()
    stop = os.path.abspath(stop_at)
    for f in files:
        fsync_path(f)
        d = os.path.dirname(os.path.abspath(f))
        while d not in dirs and (d == stop or d.startswith(stop + os.sep)):
            dirs.add(d)
            if d == stop:
                break
            d = os.path.dirname(d)
    for d in sorted(dirs, key=len, reverse=True):
        fsync_path(d)


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` via a hidden temporary, fsync, rename, fsync the directory.

    Readers see the old file, no file, or the whole new file, never a torn one."""
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, tmp_name(name, uuid.uuid4().hex))
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_path(directory)


def remove_stale_temporaries(directory: str, final_name: str) -> int:
    """Delete temporaries that a killed writer left for ``final_name``; returns how many.

    Only called by the one writer that owns the shard, so it never removes a live writer's file."""
    prefix = tmp_prefix(final_name)
    removed = 0
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0
    for name in names:
        if name.startswith(prefix):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, name))
                removed += 1
    return removed
