"""Audit store: relevance maps in Zarr v3, per-sample summaries in Parquet, each shard committed once.

Write side: :class:`AuditStore` (``create_or_open`` / ``write_shard``) with an :class:`AuditSpec` and
:class:`ShardResult` per shard, planned by :func:`plan_shards`. Read side: :func:`open_audit`.
See docs/store.md for the layout, schema and guarantees.
"""

from .claim import lock_store
from .errors import (
    AuditStoreError,
    ConfigMismatchError,
    DamagedStoreError,
    NotAnAuditError,
    OutputWriteError,
    ShardValidationError,
)
from .layout import AuditLayout, plan_shards
from .lock import LeaseLostError, StoreLock, StoreLockedError
from .lock import probe as lock_holder
from .reader import AuditReader, open_audit
from .spec import AuditSpec, ShardResult
from .verify import VerifyReport, check_committed_shards
from .writer import AuditStore

__all__ = [
    "AuditLayout",
    "AuditReader",
    "AuditSpec",
    "AuditStore",
    "AuditStoreError",
    "ConfigMismatchError",
    "DamagedStoreError",
    "LeaseLostError",
    "NotAnAuditError",
    "OutputWriteError",
    "ShardResult",
    "ShardValidationError",
    "StoreLock",
    "StoreLockedError",
    "VerifyReport",
    "check_committed_shards",
    "lock_holder",
    "lock_store",
    "open_audit",
    "plan_shards",
]
