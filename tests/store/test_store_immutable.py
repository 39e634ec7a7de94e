"""Committed chunks are never rewritten in place: a re-write replaces whole files by rename."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import zarr

from lrp_tasks.store import AuditStore

from .store_helpers import REPO_ROOT, make_shard, make_spec, shard_arrays, write_all

BIG = {"n_samples": 128, "sample_shape": [3, 32, 32], "shard_size": 64, "chunk_size": 64}

REWRITE = """
import sys, time
sys.path.insert(0, {root!r})
from lrp_tasks.store import AuditStore
from tests.store.store_helpers import make_shard, make_spec
spec = make_spec(**{spec!r})
store = AuditStore.create_or_open(sys.argv[1], spec)
print("ready", flush=True)
deadline = time.monotonic() + float(sys.argv[2])
i = 0
while time.monotonic() < deadline:
    i += 1
    store.uncommit({{0: ["forced re-write (test)"]}})
    assert store.write_shard(make_shard(store.spec, 0, 0, 64, seed=i % 3))
print(i, flush=True)
"""


def test_a_rewritten_chunk_is_a_new_file(tmp_path) -> None:
    store = AuditStore.create_or_open(tmp_path, make_spec(**BIG))
    write_all(store)
    chunk = tmp_path / "relevance.zarr" / "relevance" / "c.0.0.0.0"
    with open(chunk, "rb") as old:  # a reader that opened the committed chunk before the re-write...
        before = os.fstat(old.fileno()).st_ino
        store.uncommit({0: ["forced re-write (test)"]})
        store.write_shard(make_shard(store.spec, 0, 0, 64, seed=7))
        old_bytes = old.read()
    assert os.stat(chunk).st_ino != before  # ...keeps reading the old, complete file
    codec_free = zarr.open_group(str(tmp_path / "relevance.zarr"), mode="r")["relevance"]
    np.testing.assert_array_equal(codec_free[0:64], shard_arrays(store.spec, 0, 64, seed=7)["relevance"])
    assert len(old_bytes) > 0


@pytest.mark.integration
def test_readers_never_see_a_torn_chunk_during_a_forced_rewrite(tmp_path) -> None:
    store = AuditStore.create_or_open(tmp_path, make_spec(**BIG))
    write_all(store, seed=0)
    store.close()
    expected = {seed: shard_arrays(store.spec, 0, 64, seed=seed)["relevance"] for seed in range(3)}
    writer = subprocess.Popen(
        [sys.executable, "-c", REWRITE.format(root=str(REPO_ROOT), spec=BIG), str(tmp_path), "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    assert writer.stdout.readline().strip() == "ready", writer.stderr.read()
    reads, errors = 0, []
    arr = zarr.open_group(str(tmp_path / "relevance.zarr"), mode="r")["relevance"]
    while writer.poll() is None:
        try:
            values = arr[0:64]
        except Exception as exc:  # any decoding error is the failure we look for
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        reads += 1
        if not any(np.array_equal(values, e) for e in expected.values()):
            errors.append("a read matched none of the written versions")
        time.sleep(0)
    out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    rewrites = int(out.split()[-1])
    assert rewrites > 5 and reads > 20, (rewrites, reads)
    assert errors == [], errors[:3]
