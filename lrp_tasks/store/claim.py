"""Claiming an audit directory for writing: a local path, recognised as an audit (or empty), and its
writer lock. The writer and ``verify --repair`` both write only through :func:`lock_store`."""

from __future__ import annotations

import logging
import os

from . import lock as store_lock
from .directory import claim_directory
from .errors import AuditStoreError
from .layout import local_path
from .removal import clean_staging, refuse_symlinked_folders

log = logging.getLogger("lrp_tasks.store")


def lock_store(path: str | os.PathLike[str]) -> store_lock.StoreLock:
    """Claim ``path`` as an audit directory (refusing a non-empty directory that is not one) and take its
    writer lock; raises :class:`~.lock.StoreLockedError` naming the holder when another run has it.

    Use as a context manager, or call ``release()``. Re-entrant within a process: the stores this process
    opens on ``path`` share the lock. The first acquisition clears the staging area (no writer is left
    that could still need it): only the store's own temporaries, never through a symlink; a store
    folder that is a symlink is refused before anything is written."""
    root = local_root(path)
    claim_directory(root)
    refuse_symlinked_folders(root)
    lock = store_lock.acquire(root)
    if lock.count == 1:
        try:
            kept = clean_staging(root).kept
        except BaseException:
            lock.release()
            raise
        if kept:
            log.warning("audit %s: kept files in staging/ that the store did not write: %s", root, kept[:10])
    return lock


def local_root(path: str | os.PathLike[str]) -> str:
    root = local_path(path)
    if root is None:
        raise AuditStoreError(
            f"writing an audit needs a local path (atomic rename and fsync); got {os.fspath(path)!r}. "
            "Write locally and copy the finished directory; open_audit() reads fsspec URLs."
        )
    root = os.path.abspath(root)
    if os.path.exists(root) and not os.path.isdir(root):
        raise AuditStoreError(f"audit path {root} exists and is not a directory")
    return root
