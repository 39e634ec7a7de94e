"""One writer per store: the lock, stale locks of dead runs, and the lease workers check before commits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from lrp_tasks.store import AuditStore, LeaseLostError, StoreLockedError, lock_holder, lock_store, open_audit

from .store_helpers import REPO_ROOT, make_shard, make_spec, write_all

HOLD = """
import sys, time
sys.path.insert(0, {root!r})
from lrp_tasks.store import AuditStore
from tests.store.store_helpers import make_spec
store = AuditStore.create_or_open(sys.argv[1], make_spec())
print(store.run_token, flush=True)
time.sleep(600)
"""


def hold_in_subprocess(path) -> tuple[subprocess.Popen[str], str]:
    """A real process holding the store's lock (until killed); returns it and its run token."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD.format(root=str(REPO_ROOT)), str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    token = proc.stdout.readline().strip()
    assert token, proc.stderr.read()
    return proc, token


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def test_the_lock_is_reentrant_in_a_process_and_released_on_close(tmp_path) -> None:
    with lock_store(tmp_path) as lock:
        store = AuditStore.create_or_open(tmp_path, make_spec())  # shares this process's lock
        assert store.run_token == lock.token
        assert lock_holder(tmp_path)["pid"] == os.getpid()
        store.close()
        assert lock_holder(tmp_path)["token"] == lock.token  # still held by the outer reference
    assert lock_holder(tmp_path) is None
    holder = json.loads((tmp_path / "lrp-audit.lock").read_text())
    assert holder["released_at"] and holder["pid"] == os.getpid()


@pytest.mark.integration
def test_a_second_run_fails_at_once_naming_the_holder(tmp_path) -> None:
    proc, token = hold_in_subprocess(tmp_path)
    try:
        with pytest.raises(
            StoreLockedError, match=rf"being written by another run: run {token} on host .*pid {proc.pid}"
        ):
            AuditStore.create_or_open(tmp_path, make_spec())
        with pytest.raises(StoreLockedError):
            AuditStore.create_or_open(tmp_path, make_spec(), mode="overwrite")  # --fresh cannot bypass it
    finally:
        kill(proc)


@pytest.mark.integration
def test_the_lock_of_a_killed_run_is_taken_over_and_reported(tmp_path, caplog) -> None:
    proc, token = hold_in_subprocess(tmp_path)
    kill(proc)  # SIGKILL: no chance to release; the kernel drops the flock
    with lock_store(tmp_path) as lock:
        assert lock.previous is not None and lock.previous["token"] == token and lock.previous["pid"] == proc.pid
        assert lock.token != token
    assert f"taking over the writer lock from run {token}" in caplog.text and "ended without releasing" in caplog.text


@pytest.mark.integration
def test_workers_of_a_dead_run_cannot_commit(tmp_path) -> None:
    proc, token = hold_in_subprocess(tmp_path)
    worker = AuditStore.create_or_open(tmp_path, make_spec(), lease=token)  # a worker of that run
    assert worker.write_shard(make_shard(worker.spec, 0, 0, 4)) is True
    kill(proc)
    with pytest.raises(LeaseLostError, match=rf"run {token} .* no longer holds the store's writer lock"):
        worker.write_shard(make_shard(worker.spec, 1, 4, 8))
    # A new run takes the store over: the old run's worker is refused by name.
    with lock_store(tmp_path):
        with pytest.raises(LeaseLostError, match="now held by another run"):
            worker.write_shard(make_shard(worker.spec, 1, 4, 8))
    assert open_audit(str(tmp_path)).committed_shards == {0}
    assert list((tmp_path / "staging").iterdir()) == []


def test_a_closed_store_cannot_write(tmp_path) -> None:
    store = AuditStore.create_or_open(tmp_path, make_spec())
    store.close()
    with pytest.raises(LeaseLostError, match="was closed"):
        store.write_shard(make_shard(store.spec, 0, 0, 4))


FORK_CHILD_TIMEOUT = 60


@pytest.mark.integration
def test_writing_in_a_forked_child_does_not_hang(tmp_path) -> None:
    store = AuditStore.create_or_open(tmp_path, make_spec())
    write_all(store, only={0})  # the parent's fsync pool now has threads, which a fork does not copy
    pid = os.fork()
    if pid == 0:  # the child: write a shard with the inherited store, then leave without cleanup
        code = 1
        try:
            code = 0 if store.write_shard(make_shard(store.spec, 1, 4, 8)) else 2
        finally:
            os._exit(code)
    import time

    deadline = time.monotonic() + FORK_CHILD_TIMEOUT
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("write_shard in a forked child hung")
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.committed_shards() == {0, 1}
    write_all(store, only={2})  # the parent still holds the lock and writes
    assert open_audit(str(tmp_path)).committed_shards == {0, 1, 2}
