"""The write side of an audit: :class:`AuditStore` takes finished shards and commits each exactly once.

One run writes a store at a time: opening a store for writing takes its writer lock (or joins the run
holding it, with the run's lease token, in a worker process); see :mod:`.lock`.

Order of a shard's write (each step durable before the next):

1. Zarr chunks of rows ``start:stop`` of every array (new chunk files created in place, exclusively;
   chunks that already exist as temporaries in ``staging/``) and the Parquet part (in ``staging/``),
   all fsynced;
2. the lease checked, re-written chunks renamed over the old files (directories fsynced): an existing
   chunk is replaced by a rename, never rewritten in place, so no reader ever sees a torn chunk;
3. the lease checked again, the part renamed to ``summaries/part-<shard>.parquet`` (directory
   fsynced): the commit point;
4. the commit record in ``manifest/`` (a receipt with sizes and CRC-32s of the shard's files, rebuilt
   from the part by the next open if it is lost).

A writer killed before 3 leaves no committed trace; the shard is pending and the next run rewrites
it. Killed between 3 and 4, the shard is committed and the next open rebuilds its record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import warnings
from typing import Any, Literal

import numpy as np

from lrp_tasks.config.canonical import differing_fields, json_digest, strip_fields

from . import lock as store_lock
from .claim import local_root, lock_store
from .directory import require_audit_dir, wipe_store
from .durable import BackgroundSync, fsync_many, fsync_path, write_hidden
from .errors import AuditStoreError, ConfigMismatchError, ShardValidationError
from .layout import FORMAT_VERSION, AuditLayout, part_name, plan_shards
from .manifest import make_record, recover_missing_records, write_record
from .provenance import package_versions, utc_now_iso
from .relevance import (
    CONCEPT_CHANNELS,
    CONCEPT_RELEVANCE,
    CONCEPTS,
    INPUT,
    LOGITS,
    RELEVANCE,
    TARGET,
    RelevanceArrays,
    create_group_atomically,
    layerwise_key,
    metric_key,
    read_group_attrs,
)
from .spec import AuditSpec, ShardResult
from .summaries_io import committed_part_ids, encode_part, table_from_frame
from .verify import check_committed_shards, uncommit_shards

log = logging.getLogger("lrp_tasks.store")

Mode = Literal["resume", "overwrite", "create"]

#: Test hook: set to "after_zarr" or "after_parquet" to make ``write_shard`` die (``os._exit(137)``, as a
#: SIGKILL would) at that point; ``LRP_AUDIT_TEST_KILL_SHARD`` limits it to one shard id.
KILL_ENV = "LRP_AUDIT_TEST_KILL_AT"
KILL_SHARD_ENV = "LRP_AUDIT_TEST_KILL_SHARD"

HINT = "Use a new output directory, or discard the existing audit (--fresh, mode='overwrite')."


def _maybe_die(stage: str, shard_id: int) -> None:
    if os.environ.get(KILL_ENV) != stage:
        return
    only = os.environ.get(KILL_SHARD_ENV)
    if only is None or int(only) == shard_id:
        os._exit(137)


def _new_attrs(spec: AuditSpec, audit_id: str) -> dict[str, Any]:
    names = {"class_names": list(spec.class_names)} if spec.class_names else {}
    return {
        "format_version": FORMAT_VERSION,
        "audit_id": audit_id,
        "config": dict(spec.config),
        "config_digest": spec.digest,
        "weights_digest": spec.weights_digest,
        "composite": spec.composite,
        "layout": spec.layout_dict(),
        "identity": {
            "config_digest": spec.digest,
            "operational": list(spec.operational),
            "weights_digest": spec.weights_digest,
            "dataset": dict(spec.dataset),
        },
        "versions": package_versions(),
        "created_at": utc_now_iso(),
        **names,
    }


def _stored_config_digest(stored: dict[str, Any], spec: AuditSpec) -> str:
    identity = stored.get("identity")
    if isinstance(identity, dict) and identity.get("config_digest"):
        return str(identity["config_digest"])
    if spec.config_digest is not None:
        return str(stored.get("config_digest"))
    # An audit written before the identity existed: its digest covered operational fields too.
    return json_digest(stored.get("config") or {}, spec.operational)


def _identity_digest(stored: dict[str, Any], spec: AuditSpec) -> str:
    """The stored config's digest by this run's rules: the recorded config without ``spec.operational``,
    so a store written while the list of result-neutral fields was another resumes by today's list.
    A caller that brings its own digest is compared with the recorded one."""
    if spec.config_digest is None and stored.get("config"):
        return json_digest(stored["config"], spec.operational)
    return _stored_config_digest(stored, spec)


def _adopt_chunk_size(stored: dict[str, Any], spec: AuditSpec) -> AuditSpec:
    """An automatic chunk size is a storage detail: resume with the one the audit was created with."""
    chunk = (stored.get("layout") or {}).get("chunk_size")
    if spec.chunk_size is None and isinstance(chunk, int) and chunk >= 1 and spec.shard_size % chunk == 0:
        return dataclasses.replace(spec, chunk_size=chunk)
    return spec


def _check_compatible(path: str, stored: dict[str, Any], spec: AuditSpec) -> None:
    """Refuse to resume an audit of another config, model, dataset or layout (never mix two), naming
    what changed. Operational fields (``spec.operational``) may differ."""
    if stored.get("format_version") != FORMAT_VERSION:
        raise ConfigMismatchError(
            f"audit at {path} has store format {stored.get('format_version')}, this code writes {FORMAT_VERSION}"
        )
    old_digest = _identity_digest(stored, spec)
    if old_digest != spec.digest:
        ignore = tuple(spec.operational)
        keys = differing_fields(
            strip_fields(stored.get("config") or {}, ignore), strip_fields(dict(spec.config), ignore)
        )
        raise ConfigMismatchError(
            f"config digest mismatch: the audit at {path} was written with config digest {old_digest}, this "
            f"run's config digest is {spec.digest} (differing config keys: "
            f"{keys or 'none visible; digests computed differently'}). One audit store never mixes two "
            f"configs. {HINT}"
        )
    if stored.get("weights_digest") != spec.weights_digest:
        raise ConfigMismatchError(
            f"model weights digest mismatch: the model weights changed. The audit at {path} explains weights "
            f"{stored.get('weights_digest')!r}, this run has {spec.weights_digest!r}. {HINT}"
        )
    _check_dataset(path, stored, spec)
    old_layout, new_layout = stored.get("layout") or {}, spec.layout_dict()
    diffs = [
        f"{k}: stored {old_layout.get(k)!r}, given {new_layout.get(k)!r}"
        for k in sorted(set(old_layout) | set(new_layout))
        if old_layout.get(k) != new_layout.get(k)
    ]
    if diffs:
        raise ConfigMismatchError(f"audit at {path} has another layout ({'; '.join(diffs)}). {HINT}")
    if spec.audit_id is not None and spec.audit_id != stored.get("audit_id"):
        raise ConfigMismatchError(
            f"audit at {path} has audit_id {stored.get('audit_id')!r}, this run asks for {spec.audit_id!r}. {HINT}"
        )
    if stored.get("composite") != spec.composite:
        warnings.warn(
            f"audit at {path} was written with composite {stored.get('composite')!r}, this run prints "
            f"{spec.composite!r}; same config digest, so resuming (check the LRP rules did not change)",
            stacklevel=3,
        )


def _check_dataset(path: str, stored: dict[str, Any], spec: AuditSpec) -> None:
    old = (stored.get("identity") or {}).get("dataset") or {}
    new = dict(spec.dataset)
    if not new.get("digest"):
        return  # the caller brings no fingerprint (library use): nothing to compare
    if not old.get("digest"):
        log.warning(
            "audit at %s was created before dataset fingerprints were recorded: cannot check that this run "
            "reads the same dataset (%s)",
            path,
            new.get("id", "?"),
        )
        return
    if old["digest"] == new["digest"]:
        return
    old_files, new_files = old.get("files") or {}, new.get("files") or {}
    changed = sorted(f for f in set(old_files) | set(new_files) if old_files.get(f) != new_files.get(f))
    detail = f"; files that differ: {changed[:10]}" + (" ..." if len(changed) > 10 else "") if changed else ""
    raise ConfigMismatchError(
        f"dataset changed: the audit at {path} explains dataset {old.get('id', '?')!r} (fingerprint "
        f"{str(old['digest'])[:16]}), this run reads {new.get('id', '?')!r} (fingerprint "
        f"{str(new['digest'])[:16]}){detail}. One audit store never mixes two datasets. {HINT}"
    )


class AuditStore:
    """An open audit directory for writing; build it with :meth:`create_or_open`, close it (or use it as
    a context manager) to release the writer lock."""

    def __init__(
        self,
        root: str,
        spec: AuditSpec,
        attrs: dict[str, Any],
        lock: store_lock.StoreLock | None = None,
        lease: store_lock.Lease | None = None,
    ) -> None:
        self.root = root
        self.layout = AuditLayout(root)
        self.spec = spec
        self.attrs = attrs
        self.plan = plan_shards(spec.n_samples, spec.shard_size)
        self._arrays = RelevanceArrays(self.layout.zarr_path, spec)
        self._lock = lock
        self._lease = lease
        self.recovered_damage: dict[int, list[str]] = {}
        """Shards un-committed on open because their part (without record) was unreadable."""

    @classmethod
    def create_or_open(
        cls,
        path: str | os.PathLike[str],
        spec: AuditSpec,
        mode: Mode = "resume",
        lease: str | None = None,
    ) -> AuditStore:
        """Open the audit at ``path`` for writing, creating it if needed.

        ``resume``: create if absent, else open and check that config digest, weights digest, dataset
        fingerprint and layout match (refused with :class:`ConfigMismatchError` naming what changed).
        ``overwrite``: delete what the store wrote first (only in a recognised audit directory).
        ``create``: refuse if a store exists. A non-empty directory that is not an audit store is refused
        in every mode (:class:`NotAnAuditError`), and nothing in it is touched.

        Without ``lease`` the store takes the directory's writer lock (or shares the one this process
        holds) and raises :class:`~.lock.StoreLockedError` if another run holds it. A worker of a run
        passes the run's lease token instead: it then writes under that run's lock, and every commit
        checks that the run still holds it."""
        if mode not in ("resume", "overwrite", "create"):
            raise ValueError(f"mode must be 'resume', 'overwrite' or 'create', got {mode!r}")
        root = local_root(path)
        layout = AuditLayout(root)
        held: store_lock.StoreLock | None = None
        joined: store_lock.Lease | None = None
        if lease is None:
            held = lock_store(root)
        else:
            require_audit_dir(root)
            joined = store_lock.Lease(root, lease)
            joined.check()
        try:
            if mode == "overwrite":
                if held is None:
                    raise AuditStoreError("only the run holding the store's lock may overwrite it (not a worker)")
                kept = wipe_store(root)
                if kept:
                    log.warning("overwrite of %s kept files the store did not write: %s", root, kept[:10])
            if mode == "create" and os.path.exists(os.path.join(layout.zarr_path, "zarr.json")):
                raise AuditStoreError(f"an audit already exists at {root} (mode='create'); use mode='resume'")
            for d in (layout.summaries_dir, layout.manifest_dir, layout.staging_dir):
                os.makedirs(d, exist_ok=True)

            new_id = spec.audit_id or spec.new_audit_id()
            create_group_atomically(root, spec, _new_attrs(spec, new_id))
            stored = read_group_attrs(layout.zarr_path)
            spec = _adopt_chunk_size(stored, spec)
            _check_compatible(root, stored, spec)
            spec = dataclasses.replace(
                spec, audit_id=stored["audit_id"], config_digest=_stored_config_digest(stored, spec)
            )
            _, unreadable = recover_missing_records(layout, stored["audit_id"], spec.digest)
            store = cls(root, spec, stored, held, joined)
            if unreadable:
                damage = {sid: [why] for sid, why in unreadable.items()}
                store.uncommit(damage)
                store.recovered_damage = damage
            return store
        except BaseException:
            if held is not None:
                held.release()
            raise

    def close(self) -> None:
        """Release this store's share of the writer lock (the last share unlocks the directory)."""
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Queries ----------------------------------------------------------------------------------------

    @property
    def audit_id(self) -> str:
        assert self.spec.audit_id is not None
        return self.spec.audit_id

    @property
    def config_digest(self) -> str:
        return self.spec.digest

    @property
    def run_token(self) -> str | None:
        """The token of the run this store writes for (its lease)."""
        if self._lease is not None:
            return self._lease.token
        return self._lock.token if self._lock is not None else None

    def committed_shards(self) -> set[int]:
        """Shard ids whose Parquet part is published (and whose Zarr rows were durable before that)."""
        return set(committed_part_ids(self.layout.summaries_dir))

    def is_committed(self, shard_id: int) -> bool:
        return os.path.exists(self.layout.part_path(shard_id))

    def pending_shards(self) -> list[tuple[int, int, int]]:
        """The plan entries still to do, in order: what a resumed run should compute."""
        done = self.committed_shards()
        return [entry for entry in self.plan if entry[0] not in done]

    # Integrity ---------------------------------------------------------------------------------------

    def check_committed(self, deep: bool = False) -> dict[int, list[str]]:
        """Problems of each damaged committed shard: presence and sizes of its part and chunks (and with
        ``deep``: decoding, row counts, sample ids, checksums). Empty when all are sound."""
        return check_committed_shards(self.root, deep=deep).damaged

    def uncommit(self, damaged: dict[int, list[str]]) -> None:
        """Withdraw the commit of these shards (part first, then record) so that the next run redoes
        them; their chunks stay until they are replaced."""
        self._check_lease()
        for sid, problems in sorted(damaged.items()):
            log.warning("audit %s: shard %s is damaged (%s); un-committing it", self.root, sid, "; ".join(problems))
        uncommit_shards(self.layout, damaged)

    def redo_damaged(self, deep: bool = False) -> dict[int, list[str]]:
        """Check the committed shards and un-commit the damaged ones (``run`` does this cheaply before
        it skips committed shards); returns them with their problems."""
        damaged = self.check_committed(deep=deep)
        if damaged:
            self.uncommit(damaged)
        return {**self.recovered_damage, **damaged}

    def _check_lease(self) -> None:
        if self._lease is not None:
            self._lease.check()
        elif self._lock is None or self._lock.fd < 0:
            raise store_lock.LeaseLostError(f"audit store {self.root} was closed: it no longer holds the writer lock")

    # Writing ----------------------------------------------------------------------------------------

    def write_shard(self, shard: ShardResult) -> bool:
        """Write and commit one shard; False (and nothing touched) if it was already committed.

        Everything is validated before the first byte is written, so a bad shard raises
        :class:`ShardValidationError` and leaves the store as it was. A store whose run lost the lock
        raises :class:`~.lock.LeaseLostError` and publishes nothing."""
        sid = shard.shard_id
        if not 0 <= sid < len(self.plan):
            raise ShardValidationError(f"shard {sid} is not in the plan (0..{len(self.plan) - 1})")
        _, start, stop = self.plan[sid]
        if (shard.start, shard.stop) != (start, stop):
            raise ShardValidationError(
                f"shard {sid} covers samples {start}:{stop} in the plan, got {shard.start}:{shard.stop}"
            )
        if self.is_committed(sid):
            return False
        self._check_lease()
        data = self._validated_arrays(shard)
        table = table_from_frame(
            shard.summaries,
            shard_id=sid,
            start=start,
            stop=stop,
            rows_per_sample=self.spec.k,
            audit_id=self.audit_id,
        )
        self._check_consistency(shard, table.column("sample_index").to_numpy(), table.column("target").to_numpy())

        meta = {
            "format_version": FORMAT_VERSION,
            "shard_id": sid,
            "start": start,
            "stop": stop,
            "rows": table.num_rows,
            "audit_id": self.audit_id,
            "config_digest": self.config_digest,
        }
        part = self.layout.part_path(sid)
        staging = self.layout.staging_dir
        # 1. New chunk files in place, re-written ones and the part into staging/, each fsynced in the
        #    background as soon as it is written, then the directories of new chunk files.
        sync = BackgroundSync()
        created, staged, chunk_files = self._arrays.write(start, stop, data, staging, on_written=sync.add)
        sync.add_many(created)  # the new files' directories (the files are already on their way)
        payload = encode_part(table, meta)
        hidden = write_hidden(part, payload, staging)
        sync.add(hidden)
        sync.wait()
        _maybe_die("after_zarr", sid)
        # 2. Re-written chunks replace the old files by rename (never in place), made durable.
        if staged:
            self._check_lease()
            fsync_many(RelevanceArrays.publish(staged))
        # 3. Publish the part: the commit point.
        self._check_lease()
        os.replace(hidden, part)
        fsync_path(self.layout.summaries_dir)
        _maybe_die("after_parquet", sid)
        # 4. The receipt (rebuilt from the part by the next open if a crash loses it).
        chunks = {name: self._arrays.chunk_keys(name, start, stop) for name in data}
        write_record(
            self.layout,
            make_record(
                shard_id=sid,
                start=start,
                stop=stop,
                rows=table.num_rows,
                part_file=part_name(sid),
                part_sha256=hashlib.sha256(payload).hexdigest(),
                part_bytes=len(payload),
                audit_id=self.audit_id,
                config_digest=self.config_digest,
                chunks=chunks,
                chunk_files=chunk_files,
                run=self.run_token,
            ),
        )
        return True

    def _validated_arrays(self, shard: ShardResult) -> dict[str, np.ndarray]:
        """The arrays to write, by Zarr path, after every check; float arrays keep the caller's dtype
        (range-checked for the stored one) and are cast chunk by chunk as they are written."""
        spec, sid, n = self.spec, shard.shard_id, shard.n
        where = f"shard {sid} (samples {shard.start}:{shard.stop})"

        def shaped(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
            arr = np.asarray(value)
            if arr.shape != shape:
                raise ShardValidationError(f"{where}: {name} has shape {arr.shape}, expected {shape}")
            return arr

        def nonfinite(name: str, arr: np.ndarray) -> None:
            """Raise naming the samples with NaN/inf, if there are any."""
            bad = ~np.isfinite(arr)
            if bad.any():
                rows = np.flatnonzero(bad.reshape(len(arr), -1).any(axis=1))
                raise ShardValidationError(
                    f"{where}: {name} has {int(bad.sum())} NaN/inf values, in samples "
                    f"{[shard.start + int(r) for r in rows[:5]]}{'...' if len(rows) > 5 else ''}; "
                    "nothing was written"
                )

        def checked(name: str, arr: np.ndarray, dtype: str, must_be_finite: bool = True) -> np.ndarray:
            """``arr`` after checking it is numeric, finite (unless told otherwise) and storable as
            ``dtype`` (no value may round to inf); it is cast chunk by chunk when written."""
            if arr.dtype.kind not in "fiu":
                raise ShardValidationError(f"{where}: {name} must be numeric, got dtype {arr.dtype}")
            if arr.dtype.kind != "f" or not arr.size:
                return arr
            target = np.dtype(dtype)
            if target.kind == "f" and target.itemsize < arr.dtype.itemsize:
                lo, hi = float(arr.min()), float(arr.max())  # NaN and inf show in min/max
                if not (math.isfinite(lo) and math.isfinite(hi)):
                    if must_be_finite:
                        nonfinite(name, arr)
                    lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
                # Values from max + half an ulp on round to inf (65520 for float16).
                finfo = np.finfo(target)
                limit = float(finfo.max) + 2.0 ** (finfo.maxexp - finfo.nmant - 2)
                if max(-lo, hi) >= limit:
                    raise ShardValidationError(
                        f"{where}: {name} exceeds the {dtype} range (max |value| {max(-lo, hi):.6g}, "
                        f"{dtype} holds up to {float(finfo.max):.6g}); store it as float32"
                    )
            elif must_be_finite and not np.isfinite(
                np.add.reduce(arr, axis=None, dtype=np.result_type(arr.dtype, np.float32))
            ):
                # One pass, no temporary: a NaN/inf makes the sum non-finite. A sum that overflows
                # without one only costs the exact check.
                nonfinite(name, arr)
            return arr

        rel = checked("relevance", shaped("relevance", shard.relevance, (n, *spec.relevance_row_shape)), spec.dtype)
        logits = checked("logits", shaped("logits", shard.logits, (n, spec.n_classes)), "float32")
        target = shaped("target", shard.target, (n, *spec.target_row_shape))
        if target.dtype.kind not in "iu":
            raise ShardValidationError(f"{where}: target must be integers, got dtype {target.dtype}")
        if target.size and (target.min() < 0 or target.max() >= spec.n_classes):
            raise ShardValidationError(
                f"{where}: target values [{target.min()}, {target.max()}] outside [0, {spec.n_classes})"
            )
        data = {RELEVANCE: rel, LOGITS: logits, TARGET: target.astype(np.int64, copy=False)}
        if spec.keep_input:
            if shard.input is None:
                raise ShardValidationError(f"{where}: the audit keeps inputs (keep_input=True) but input is None")
            x = shaped("input", shard.input, (n, *spec.sample_shape))
            data[INPUT] = checked("input", x, spec.input_dtype, must_be_finite=False)
        elif shard.input is not None:
            raise ShardValidationError(f"{where}: input given but the audit was created with keep_input=False")
        data.update(self._validated_concepts(shard, where, shaped, checked))
        data.update(self._validated_layerwise(shard, where, shaped, checked))
        data.update(self._validated_metrics(shard, where, shaped, checked))
        return data

    def _validated_concepts(self, shard: ShardResult, where: str, shaped: Any, checked: Any) -> dict:
        spec, n = self.spec, shard.n
        given = {
            "concepts": shard.concepts,
            "concept_channels": shard.concept_channels,
            "concept_relevance": shard.concept_relevance,
        }
        if not spec.n_concepts:
            extra = [name for name, value in given.items() if value is not None]
            if extra:
                raise ShardValidationError(
                    f"{where}: {', '.join(extra)} given but the audit was created with n_concepts=0"
                )
            return {}
        for name, value in given.items():
            if value is None:
                raise ShardValidationError(f"{where}: the audit keeps {spec.n_concepts} concepts but {name} is None")
        con = checked(
            "concepts", shaped("concepts", shard.concepts, (n, spec.n_concepts, *spec.sample_shape)), spec.dtype
        )
        channels = shaped("concept_channels", shard.concept_channels, (n, spec.n_concepts))
        if channels.dtype.kind not in "iu":
            raise ShardValidationError(f"{where}: concept_channels must be integers, got dtype {channels.dtype}")
        if channels.size and channels.min() < 0:
            raise ShardValidationError(f"{where}: concept_channels must be >= 0, got {channels.min()}")
        ordered = np.sort(channels, axis=1)
        if (ordered[:, 1:] == ordered[:, :-1]).any():
            raise ShardValidationError(f"{where}: concept_channels repeat a channel within a sample")
        if spec.concept_ids is not None and not (channels == np.asarray(spec.concept_ids)).all():
            raise ShardValidationError(
                f"{where}: concept_channels differ from the audit's fixed concept_ids {list(spec.concept_ids)}"
            )
        relevance = shaped("concept_relevance", shard.concept_relevance, (n, spec.n_concepts))
        return {
            CONCEPTS: con,
            CONCEPT_CHANNELS: channels.astype(np.int64, copy=False),
            CONCEPT_RELEVANCE: checked("concept_relevance", relevance, "float32"),
        }

    def _validated_layerwise(self, shard: ShardResult, where: str, shaped: Any, checked: Any) -> dict:
        spec = self.spec
        given = dict(shard.layerwise or {})
        missing = [name for name in spec.layerwise if name not in given]
        extra = [name for name in given if name not in spec.layerwise]
        if missing or extra:
            raise ShardValidationError(
                f"{where}: layerwise relevances must be exactly the audit's layers {list(spec.layerwise)}; "
                f"missing {missing}, not in the audit {extra}"
            )
        data = {}
        for name in spec.layerwise:
            label = f"layerwise[{name!r}]"
            arr = shaped(label, given[name], (shard.n, *spec.layerwise_row_shape(name)))
            data[layerwise_key(name)] = checked(label, arr, spec.dtype)
        return data

    def _validated_metrics(self, shard: ShardResult, where: str, shaped: Any, checked: Any) -> dict:
        spec = self.spec
        given = dict(shard.metrics or {})
        missing = [name for name in spec.metrics if name not in given]
        extra = [name for name in given if name not in spec.metrics]
        if missing or extra:
            raise ShardValidationError(
                f"{where}: metric curves must be exactly the audit's {list(spec.metrics)}; "
                f"missing {missing}, not in the audit {extra}"
            )
        data = {}
        for name in spec.metrics:
            label = f"metrics[{name!r}]"
            arr = shaped(label, given[name], (shard.n, *spec.metric_row_shape(name)))
            data[metric_key(name)] = checked(label, arr, "float32")
        return data

    def _check_consistency(self, shard: ShardResult, sample_index: np.ndarray, target: np.ndarray) -> None:
        """Summary rows must describe exactly this shard's samples and targets, in (sample, rank) order."""
        where = f"shard {shard.shard_id} (samples {shard.start}:{shard.stop})"
        expected_index = np.repeat(np.arange(shard.start, shard.stop, dtype=np.int64), self.spec.k)
        if not np.array_equal(sample_index, expected_index):
            raise ShardValidationError(
                f"{where}: summaries sample_index must list each sample of the shard {self.spec.k} time(s), in order"
            )
        if not np.array_equal(target, np.asarray(shard.target).reshape(-1)):
            raise ShardValidationError(f"{where}: summaries target column differs from the shard's target array")

    def __repr__(self) -> str:
        return (
            f"AuditStore({self.root!r}, audit_id={self.audit_id!r}, "
            f"{len(self.committed_shards())}/{len(self.plan)} shards committed)"
        )
