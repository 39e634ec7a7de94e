"""A store's identity: config (without operational fields), model weights, dataset content, layout.

Resuming with any of them changed is refused naming what changed; workers, Ray address or the output
location may change (a store resumes with other resources, or after being moved)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lrp_tasks.audit.explainer import ShardExplainer
from lrp_tasks.audit.prepare import open_shard_explainer
from lrp_tasks.config import parse_config
from lrp_tasks.store import AuditStore, ConfigMismatchError, open_audit
from lrp_tasks.store.layout import default_chunk_size
from tests.digits_audit import digits_audit_config

from .store_helpers import make_spec, snapshot, write_all

OPERATIONAL = ("output", "ray", "retries")
CONFIG = {"model": "tiny", "composite": "epsilon_plus", "output": "/a", "ray": {"workers": 4}}
DATASET = {"id": "array:x.npy@1", "digest": "d1", "files": {"x.npy": "f1"}}


def spec(**overrides: Any):
    return make_spec(config=CONFIG, operational=OPERATIONAL, dataset=DATASET, **overrides)


def test_operational_fields_may_change_on_resume(tmp_path) -> None:
    store = AuditStore.create_or_open(tmp_path, spec())
    write_all(store, only={0})
    store.close()
    other_resources = {**CONFIG, "output": "/b", "ray": {"workers": 1, "address": "ray://head:10001"}, "retries": 5}
    again = AuditStore.create_or_open(
        tmp_path, make_spec(config=other_resources, operational=OPERATIONAL, dataset=DATASET)
    )
    assert again.committed_shards() == {0}
    assert again.config_digest == store.config_digest


def test_a_moved_store_resumes_with_the_same_content(tmp_path) -> None:
    store = AuditStore.create_or_open(tmp_path / "a", spec())
    write_all(store, only={0, 1})
    store.close()
    before = open_audit(str(tmp_path / "a")).relevance.values
    shutil.move(tmp_path / "a", tmp_path / "b")
    moved = AuditStore.create_or_open(
        tmp_path / "b",
        make_spec(config={**CONFIG, "output": str(tmp_path / "b")}, operational=OPERATIONAL, dataset=DATASET),
    )
    assert moved.committed_shards() == {0, 1}
    write_all(moved, only={2})
    after = open_audit(str(tmp_path / "b"))
    np.testing.assert_array_equal(after.relevance.values[:8], before)
    assert after.committed_shards == {0, 1, 2}


def test_a_changed_dataset_is_refused_naming_it(tmp_path) -> None:
    store = AuditStore.create_or_open(tmp_path, spec())
    write_all(store, only={0})
    store.close()
    before = snapshot(tmp_path)
    swapped = {"id": "array:x.npy@2", "digest": "d2", "files": {"x.npy": "f2"}}
    with pytest.raises(ConfigMismatchError, match=r"dataset changed.*'array:x.npy@1'.*'array:x.npy@2'.*\['x.npy'\]"):
        AuditStore.create_or_open(tmp_path, make_spec(config=CONFIG, operational=OPERATIONAL, dataset=swapped))
    after = snapshot(tmp_path)
    after.pop("lrp-audit.lock")  # the refused run took and released the lock
    before.pop("lrp-audit.lock")
    assert after == before


def test_changed_weights_or_computation_are_refused_naming_them(tmp_path) -> None:
    AuditStore.create_or_open(tmp_path, spec()).close()
    with pytest.raises(ConfigMismatchError, match="model weights changed"):
        AuditStore.create_or_open(tmp_path, spec(weights_digest="sha256:new"))
    changed = {**CONFIG, "composite": "alpha_beta", "ray": {"workers": 1}}
    with pytest.raises(ConfigMismatchError, match=r"differing config keys: \['composite'\]"):
        AuditStore.create_or_open(tmp_path, make_spec(config=changed, operational=OPERATIONAL, dataset=DATASET))


def test_an_audit_from_before_the_identity_resumes_with_other_resources(tmp_path) -> None:
    # Earlier versions hashed the whole config (ray and output included) and kept no "identity".
    old = make_spec(config=CONFIG)
    store = AuditStore.create_or_open(tmp_path, old)
    write_all(store, only={0})
    store.close()
    import zarr

    group = zarr.open_group(str(tmp_path / "relevance.zarr"), mode="r+")
    attrs = dict(group.attrs)
    del attrs["identity"]
    group.attrs.clear()
    group.attrs.update(attrs)
    resumed = AuditStore.create_or_open(
        tmp_path, make_spec(config={**CONFIG, "ray": {"workers": 1}}, operational=OPERATIONAL, dataset=DATASET)
    )
    assert resumed.committed_shards() == {0}


def test_an_automatic_chunk_size_is_adopted_from_the_store(tmp_path) -> None:
    # A store created with another automatic chunk size (e.g. by an older sizing rule) resumes as it is.
    AuditStore.create_or_open(tmp_path, make_spec(chunk_size=1)).close()
    again = AuditStore.create_or_open(tmp_path, make_spec(chunk_size=None))
    assert again.spec.chunk_size == 1


# The pipeline: ShardExplainer fingerprints the files its dataset reader reads ------------------------


def _array_audit(tmp_path: Path, data: Path, **overrides: Any) -> ShardExplainer:
    cfg = digits_audit_config(
        tmp_path / "audit",
        "identity",
        dataset={"kind": "array", "path": str(data)},
        shard_size=16,
        batch_size=16,
        storage={"keep_input": False},
        **overrides,
    )
    return open_shard_explainer(parse_config(cfg), device="cpu")


def _audit_with_one_shard(tmp_path, seed: int):
    """An array dataset of 32 random samples and an audit of it with shard 0 committed."""
    rng = np.random.default_rng(seed)
    data = tmp_path / "samples.npy"
    np.save(data, rng.random((32, 1, 8, 8), dtype=np.float32))
    first = _array_audit(tmp_path, data)
    assert first.explain_shard(0, 0, 16).explained
    first.store.close()
    return rng, data, first


def test_a_replaced_dataset_file_is_refused_on_resume(tmp_path) -> None:
    rng, data, first = _audit_with_one_shard(tmp_path, 0)
    assert first.spec.dataset["files"]["samples.npy"]

    again = _array_audit(tmp_path, data, ray={"workers": 3})  # same file, other resources: resumes
    assert again.store.committed_shards() == {0}
    again.store.close()

    replaced = rng.random((32, 1, 8, 8), dtype=np.float32)
    replaced[0] = np.load(data)[0]  # same size, same first bytes: only the content tells them apart
    np.save(data, replaced)
    with pytest.raises(
        ConfigMismatchError, match=r"dataset changed.*samples\.npy.*files that differ: \['samples.npy'\]"
    ):
        _array_audit(tmp_path, data)
    assert open_audit(str(tmp_path / "audit")).committed_shards == {0}


def test_a_dataset_rewritten_in_place_with_the_same_size_and_mtime_is_refused(tmp_path) -> None:
    # cp -p over the file, an archive extracted with preserved times, touch -r: size, mtime and inode
    # stay; only the content (and the ctime, which no user call can set back) tells them apart.
    import os

    _, data, _ = _audit_with_one_shard(tmp_path, 1)
    _array_audit(tmp_path, data).store.close()  # the resumed run wrote the digest cache
    assert (tmp_path / "audit" / "cache" / "file-digests.json").exists()

    before = data.stat()
    raw = bytearray(data.read_bytes())
    raw[-64:] = bytes(64)  # same size, same header: rows 30-31 changed
    with open(data, "r+b") as f:  # in place: same inode
        f.write(raw)
    os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = data.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    with pytest.raises(ConfigMismatchError, match=r"dataset changed.*files that differ: \['samples.npy'\]"):
        _array_audit(tmp_path, data)


def test_the_dataset_digest_cache_skips_unchanged_files(tmp_path, monkeypatch) -> None:
    import lrp_tasks.audit.identity as fp

    data = tmp_path / "samples.npy"
    np.save(data, np.zeros((16, 1, 8, 8), dtype=np.float32))
    first = _array_audit(tmp_path, data)  # creates the store: no cache yet (never written outside an audit)
    first.store.close()
    _array_audit(tmp_path, data).store.close()
    assert (tmp_path / "audit" / "cache" / "file-digests.json").exists()

    def no_hashing(path: Path) -> str:
        raise AssertionError(f"{path} is unchanged but was hashed again")

    monkeypatch.setattr(fp, "hash_file", no_hashing)
    again = _array_audit(tmp_path, data)
    assert again.spec.dataset == first.spec.dataset
    again.store.close()


# No input makes chunk sizing loop: bounded shard size, O(sqrt) divisor search ----------------------


def test_a_huge_shard_size_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match=r"shard_size 1000000000000 exceeds the limit of 1048576"):
        make_spec(shard_size=10**12, chunk_size=None)
    with pytest.raises(ValueError, match="exceeds the limit"):
        default_chunk_size(10**12, 4)


def test_a_prime_shard_size_does_not_give_one_sample_chunks() -> None:
    assert default_chunk_size(257, 12 * 1024) == 257  # fits 8 MiB whole
    assert default_chunk_size(1_048_573, 4) == 1_048_573  # prime, 4 MiB as one chunk
    assert default_chunk_size(256, 1024 * 1024) == 8  # a good divisor is still preferred
    with pytest.raises(ValueError, match=r"shard_size 257 only splits into chunks of 1 sample.*e\.g\. 260"):
        default_chunk_size(257, 602_112)  # ImageNet-sized float32 maps: 257 x 0.6 MB is too big for one chunk
    with pytest.raises(ValueError, match="only splits into chunks of 1"):
        make_spec(shard_size=257, n_samples=300, sample_shape=(3, 224, 224), chunk_size=None)
