"""The one place where the store deletes anything: only names it writes, never through a symlink.

Every deletion (``--fresh``/overwrite, ``verify --repair``, un-commit, staging clean-up) goes through
:func:`remove_owned`. A path is removed only when

- its name is one the store writes there (a Parquet part or commit record name, a staging temporary
  ``.<name>.<32 hex>.tmp``, a ``zarr.json`` or a chunk key ``c/<i>/<j>/...`` inside the Zarr group);
- every directory from the audit root down to it is a real directory: each step is opened with
  ``O_NOFOLLOW`` relative to the previous one, so a symlink anywhere on the way stops the walk;
- the entry itself is a regular file (``lstat``): a symlink is never followed nor removed.

Directories the store made are removed with ``rmdir``, which never removes a non-empty one, so a
user's file inside keeps its folder. Everything else is returned as *kept*, for the caller to report.
A store folder that is itself a symlink is refused up front (:func:`refuse_symlinked_folders`).
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .errors import AuditStoreError
from .layout import (
    CACHE_DIR,
    MANIFEST_DIR,
    RELEVANCE_ZARR,
    STAGING_DIR,
    SUMMARIES_DIR,
    TMP_SUFFIX,
    parse_part_name,
    parse_record_name,
)

#: Folders of an audit directory; none of them may be a symlink (the store would write or delete there).
STORE_FOLDERS = (RELEVANCE_ZARR, SUMMARIES_DIR, MANIFEST_DIR, STAGING_DIR, CACHE_DIR)

_STAGED_RE = re.compile(r"^\..+\.[0-9a-f]{32}" + re.escape(TMP_SUFFIX) + "$")
_OLD_TEMP_RE = re.compile(r"^\.(part|shard)-.*" + re.escape(TMP_SUFFIX) + "$")
_TRASH_RE = re.compile(r"^\.trash-[0-9a-f]{32}$")
_GROUP_TMP_RE = re.compile(r"^\." + re.escape(RELEVANCE_ZARR) + r"\.[0-9a-f]{32}" + re.escape(TMP_SUFFIX) + "$")
_DIGITS = re.compile(r"^\d+$")
_CHUNK_DOT = re.compile(r"^c(\.\d+)*$")
_NOFOLLOW_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)


class SymlinkedStoreError(AuditStoreError):
    """A folder of the audit store is a symlink: the store neither writes nor deletes through it."""


@dataclass
class Removal:
    """What one deletion removed and what it left (paths relative to the audit root)."""

    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    def extend(self, other: Removal) -> Removal:
        self.removed += other.removed
        self.kept += other.kept
        return self


def refuse_symlinked_folders(root: str) -> None:
    """Raise :class:`SymlinkedStoreError` when a store folder of ``root`` is a symlink (or not a folder)."""
    for name in STORE_FOLDERS:
        path = os.path.join(root, name)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(mode) or not stat.S_ISDIR(mode):
            what = f"a symlink to {os.readlink(path)!r}" if stat.S_ISLNK(mode) else "not a directory"
            raise SymlinkedStoreError(
                f"{path} is {what}: an audit store's {name}/ must be a real directory inside it (the store "
                "never writes or deletes through a symlink). Nothing was written or deleted; replace it by "
                "a directory."
            )


def is_staged_name(name: str) -> bool:
    """A temporary the store writes into ``staging/`` (or next to a file): ``.<final>.<32 hex>.tmp``."""
    return bool(_STAGED_RE.match(name))


def is_old_temp(name: str) -> bool:
    """Temporaries older versions of the store left next to parts and records."""
    return bool(_OLD_TEMP_RE.match(name))


def _open_dir(root_fd: int, parts: list[str]) -> int | None:
    """fd of ``root/parts...`` walked without following any symlink; None when a step is not a real dir."""
    fd = os.dup(root_fd)
    for part in parts:
        try:
            nxt = os.open(part, _NOFOLLOW_DIR, dir_fd=fd)
        except OSError:
            os.close(fd)
            return None
        os.close(fd)
        fd = nxt
    return fd


def _unlink_regular(dir_fd: int, name: str) -> bool | None:
    """True when removed, False when kept (not a regular file), None when there was nothing."""
    try:
        mode = os.lstat(name, dir_fd=dir_fd).st_mode
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(mode):
        return False
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    return True


def _rmdir_if_empty(dir_fd: int, name: str) -> bool:
    try:
        os.rmdir(name, dir_fd=dir_fd)  # never removes a non-empty directory, fails on a symlink
    except FileNotFoundError:
        return True
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
            return False
        raise
    return True


def remove_owned(root: str, files: Iterable[str] = (), dirs: Iterable[str] = ()) -> Removal:
    """Remove the regular ``files`` and then the empty ``dirs`` (paths relative to ``root``, '/'-joined),
    never through or of a symlink; anything that is not a regular file (or a non-empty directory) is
    kept and returned. Directories are tried deepest first."""
    out = Removal()
    root_fd = os.open(root, _NOFOLLOW_DIR)
    try:
        for rel in files:
            *parents, name = rel.split("/")
            fd = _open_dir(root_fd, parents)
            if fd is None:  # a step is a symlink (kept) or missing (nothing to do)
                if os.path.lexists(os.path.join(root, *parents)):
                    out.kept.append(rel)
                continue
            try:
                done = _unlink_regular(fd, name)
            finally:
                os.close(fd)
            if done is not None:
                (out.removed if done else out.kept).append(rel)
        for rel in sorted(set(dirs), key=lambda d: -d.count("/")):
            *parents, name = rel.split("/")
            fd = _open_dir(root_fd, parents)
            if fd is None:
                continue
            try:
                if _rmdir_if_empty(fd, name):
                    out.removed.append(rel + "/")
            finally:
                os.close(fd)
    finally:
        os.close(root_fd)
    return out


def _scan(root: str, rel: str) -> tuple[list[str], list[str], list[str]]:
    """(files, dirs, symlinks and other entries) under ``root/rel``, without following symlinks."""
    files: list[str] = []
    dirs: list[str] = []
    other: list[str] = []
    stack = [rel]
    while stack:
        here = stack.pop()
        try:
            entries = list(os.scandir(os.path.join(root, here)))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            path = f"{here}/{entry.name}"
            if entry.is_symlink():
                other.append(path)
            elif entry.is_dir(follow_symlinks=False):
                dirs.append(path)
                stack.append(path)
            elif entry.is_file(follow_symlinks=False):
                files.append(path)
            else:
                other.append(path)
    return files, dirs, other


def _is_chunk_key(rel_in_group: str, group_dirs_with_meta: set[str]) -> bool:
    """A chunk key (``c``, ``c/<i>/<j>...`` or ``c.<i>.<j>...``, Zarr v3's two encodings) of an array
    whose ``zarr.json`` is in the directory above it."""
    array, _, key = rel_in_group.rpartition("/")
    if _CHUNK_DOT.match(key):
        return array in group_dirs_with_meta
    parts = rel_in_group.split("/")
    for i, part in enumerate(parts):
        if part == "c" and i + 1 < len(parts) and all(_DIGITS.match(p) for p in parts[i + 1 :]):
            return "/".join(parts[:i]) in group_dirs_with_meta
    return False


def zarr_tree(root: str, rel: str) -> tuple[list[str], list[str], list[str]]:
    """Split a Zarr group's tree at ``root/rel`` into (files the store writes, its dirs, everything else):
    ``zarr.json`` files and chunk keys of arrays that have a ``zarr.json``."""
    files, dirs, other = _scan(root, rel)
    with_meta = {
        f[len(rel) + 1 :].rsplit("/", 1)[0] if "/" in f[len(rel) + 1 :] else ""
        for f in files
        if f.endswith("/zarr.json")
    }
    ours, foreign = [], list(other)
    for f in files:
        inner = f[len(rel) + 1 :]
        (ours if inner.rsplit("/", 1)[-1] == "zarr.json" or _is_chunk_key(inner, with_meta) else foreign).append(f)
    # the group's own zarr.json goes first, so the group stops being one before its chunks go
    ours.sort(key=lambda f: (f != f"{rel}/zarr.json", f))
    return ours, [rel, *dirs], foreign


def _flat(root: str, folder: str, ours: Callable[[str], bool]) -> tuple[list[str], list[str]]:
    files, dirs, other = _scan(root, folder)
    mine = [f for f in files if f.count("/") == 1 and ours(f.split("/", 1)[1])]
    foreign = [f for f in files if f not in set(mine)] + other
    foreign += [d for d in dirs if d.count("/") == 1]  # sub-folders the store never makes there
    return mine, sorted(foreign)


def clean_staging(root: str) -> Removal:
    """Remove the staging temporaries of writers that are gone (the caller holds the lock); a user's
    file or symlink in ``staging/`` is kept and returned."""
    mine: list[str] = []
    owned_dirs: list[str] = []
    foreign: list[str] = []
    try:
        entries = list(os.scandir(os.path.join(root, STAGING_DIR)))
    except (FileNotFoundError, NotADirectoryError):
        return Removal()
    for entry in entries:
        rel = f"{STAGING_DIR}/{entry.name}"
        if entry.is_file(follow_symlinks=False) and is_staged_name(entry.name):
            mine.append(rel)
        elif entry.is_dir(follow_symlinks=False) and _TRASH_RE.match(entry.name):
            z_files, z_dirs, z_foreign = zarr_tree(root, rel)  # a group an older --fresh set aside
            mine += z_files
            owned_dirs += z_dirs
            foreign += z_foreign
        else:
            foreign.append(rel)
    result = remove_owned(root, mine, owned_dirs)
    result.kept = sorted(set(result.kept) | set(foreign))
    return result


def wipe_plan(root: str) -> tuple[list[str], list[str], list[str]]:
    """(files, dirs) an overwrite removes, in order, and the foreign entries it keeps."""
    part_files, part_foreign = _flat(root, SUMMARIES_DIR, lambda n: parse_part_name(n) is not None or is_old_temp(n))
    rec_files, rec_foreign = _flat(root, MANIFEST_DIR, lambda n: parse_record_name(n) is not None or is_old_temp(n))
    z_files, z_dirs, z_foreign = ([], [], [])
    if os.path.isdir(os.path.join(root, RELEVANCE_ZARR)):
        z_files, z_dirs, z_foreign = zarr_tree(root, RELEVANCE_ZARR)
    tmp_files: list[str] = []
    tmp_dirs: list[str] = []
    for name in os.listdir(root):
        if _GROUP_TMP_RE.match(name) and not os.path.islink(os.path.join(root, name)):
            f, d, fo = zarr_tree(root, name)
            tmp_files += f
            tmp_dirs += d
            z_foreign += fo
    files = part_files + rec_files + z_files + tmp_files
    return files, z_dirs + tmp_dirs, part_foreign + rec_foreign + z_foreign
