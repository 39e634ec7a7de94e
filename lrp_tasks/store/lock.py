"""One writer per store: the run holds an exclusive lock on ``<audit>/lrp-audit.lock``; its workers
carry the run's token (a lease) and check it before they publish anything.

The lock is an ``flock`` on the lock file, held by the run's process for as long as the run lasts:
the kernel drops it when that process exits in any way (SIGKILL included), so a lock can never
outlive its holder on one host. The file also names the holder (host, pid, process start time, run
token); a run that finds the flock free but the file naming a holder that never released it reports
that it takes over from a dead run. Workers (other processes, other hosts on a shared filesystem)
never take the lock: before publishing chunks and before the commit rename they check that a
live process still holds it and that the file still names their run's token, so the workers of a
killed run cannot commit into a store that a new run has taken over.

Within one process the lock is re-entrant: the flow takes it, and the store objects the same process
opens share it (reference counted).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from .errors import AuditStoreError
from .layout import LOCK_FILE
from .provenance import utc_now_iso

log = logging.getLogger("lrp_tasks.store")

#: How long an acquirer retries a busy lock before reporting it held (a worker's lease probe holds
#: a shared lock for microseconds).
BUSY_RETRY_SECONDS = 0.5


class StoreLockedError(AuditStoreError):
    """Another run holds the store's writer lock."""


class LeaseLostError(AuditStoreError):
    """The run a worker belongs to no longer holds the store: its shard is not committed."""


def process_start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux): with the pid, it names one process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[19]
    except (OSError, IndexError):
        return None


def describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "an unknown holder (the lock file is empty)"
    return (
        f"run {holder.get('token', '?')} on host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, "
        f"holding it since {holder.get('acquired_at', '?')}"
    )


def _read(fd: int) -> dict[str, Any] | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = b""
    while chunk := os.read(fd, 65536):
        raw += chunk
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _write(fd: int, data: dict[str, Any]) -> None:
    payload = json.dumps(data, sort_keys=True, indent=1).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, payload, 0)  # not fsynced: the flock is the lock; the file only names the holder


def read_holder(root: str) -> dict[str, Any] | None:
    """What the lock file says (a few retries: the holder may be rewriting it)."""
    path = os.path.join(root, LOCK_FILE)
    for _ in range(5):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            data = _read(fd)
        finally:
            os.close(fd)
        if data is not None:
            return data
        time.sleep(0.01)
    return None


class StoreLock:
    """The writer lock of one audit directory, held by this process (see :func:`acquire`)."""

    def __init__(self, root: str, fd: int, holder: dict[str, Any], previous: dict[str, Any] | None) -> None:
        self.root = root
        self.fd = fd
        self.holder = holder
        self.previous = previous
        """The holder recorded by a run that died without releasing the lock (None if none)."""
        self.count = 1
        self.owner_pid = os.getpid()

    @property
    def token(self) -> str:
        return str(self.holder["token"])

    def release(self) -> None:
        """Drop one reference; the last one marks the file released and unlocks it."""
        if os.getpid() != self.owner_pid:
            return  # a forked child shares the parent's lock; only the parent releases it
        with _REGISTRY_LOCK:
            self.count -= 1
            if self.count > 0 or self.fd < 0:
                return
            _HELD.pop(self.root, None)
            fd, self.fd = self.fd, -1
        try:
            with contextlib.suppress(OSError):
                _write(fd, {**self.holder, "released_at": utc_now_iso()})
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> StoreLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"StoreLock({self.root!r}, {describe(self.holder)})"


_HELD: dict[str, StoreLock] = {}
_REGISTRY_LOCK = threading.Lock()


def held_lock(root: str) -> StoreLock | None:
    """The lock this process holds on ``root``, if any."""
    with _REGISTRY_LOCK:
        lock = _HELD.get(os.path.abspath(root))
        return lock if lock is not None and lock.fd >= 0 else None


def acquire(root: str) -> StoreLock:
    """Take the writer lock of the audit directory ``root`` (which must exist), or raise
    :class:`StoreLockedError` at once naming the holder. Re-entrant within this process."""
    root = os.path.abspath(root)
    with _REGISTRY_LOCK:
        mine = _HELD.get(root)
        if mine is not None and mine.fd >= 0:
            mine.count += 1
            return mine
        lock = _take(root)
        _HELD[root] = lock
    if lock.previous is not None:
        log.warning(
            "audit store %s: taking over the writer lock from %s, which ended without releasing it",
            root,
            describe(lock.previous),
        )
    return lock


def _take(root: str) -> StoreLock:
    path = os.path.join(root, LOCK_FILE)
    deadline = time.monotonic() + BUSY_RETRY_SECONDS
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            if time.monotonic() < deadline:
                time.sleep(0.02)
                continue
            raise StoreLockedError(
                f"audit store {root} is being written by another run: {describe(read_holder(root))}. "
                "One run writes a store at a time: wait for it to finish, or stop it (its lock is released "
                "when its process exits)."
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the file was replaced while we waited: lock the new one
            os.close(fd)
            continue
        old = _read(fd)
        previous = old if old and "token" in old and not old.get("released_at") else None
        holder = {
            "token": uuid.uuid4().hex,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "process_start": process_start_time(os.getpid()),
            "acquired_at": utc_now_iso(),
        }
        _write(fd, holder)
        return StoreLock(root, fd, holder, previous)


def probe(root: str) -> dict[str, Any] | None:
    """The holder of the lock if a live process holds it (None when it is free); takes nothing."""
    path = os.path.join(os.path.abspath(root), LOCK_FILE)
    mine = held_lock(root)
    if mine is not None:
        return mine.holder
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            held = True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            held = False
    finally:
        os.close(fd)
    if not held:
        return None
    return read_holder(root) or {}


class Lease:
    """A worker's right to publish into a store: the token of the run that holds the lock."""

    def __init__(self, root: str, token: str) -> None:
        self.root = os.path.abspath(root)
        self.token = token

    def check(self) -> None:
        """Raise :class:`LeaseLostError` unless a live process holds the lock for this run."""
        holder = probe(self.root)
        if holder is None:
            raise LeaseLostError(
                f"audit store {self.root}: the run {self.token} that this worker belongs to no longer holds the "
                "store's writer lock (its process ended); nothing is published"
            )
        if holder.get("token") != self.token:
            raise LeaseLostError(
                f"audit store {self.root} is now held by another run ({describe(holder)}), not by run "
                f"{self.token} that this worker belongs to; nothing is published"
            )


@atexit.register
def _release_all() -> None:
    """Mark this process's locks released on a normal exit (the kernel unlocks them in any case)."""
    for lock in list(_HELD.values()):
        lock.count = 1
        with contextlib.suppress(OSError):
            lock.release()


def _after_fork_in_child() -> None:
    # A forked child shares the parent's open file description (and so its flock): it is not a holder
    # of its own (its lease checks see the parent holding the lock) and never unlocks it.
    global _REGISTRY_LOCK
    _REGISTRY_LOCK = threading.Lock()
    _HELD.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
