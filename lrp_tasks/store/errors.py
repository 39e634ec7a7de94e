"""Exceptions of the audit store: each names the audit path or shard so a failed run says what to fix."""

from __future__ import annotations


class AuditStoreError(RuntimeError):
    """Base class: anything the store refuses to do."""


class ConfigMismatchError(AuditStoreError):
    """An existing audit was written with another config, model or layout; mixing them would corrupt it."""


class ShardValidationError(AuditStoreError, ValueError):
    """A shard's arrays or summaries do not fit the audit; raised before anything is written."""


class NotAnAuditError(AuditStoreError):
    """A path holds no audit store (or something else we must not delete)."""


class DamagedStoreError(AuditStoreError):
    """A committed file of the store cannot be read: ``lrp-audit verify`` finds and repairs it."""


class OutputWriteError(AuditStoreError):
    """A result file could not be written (a full disk, no permission); its temporary was removed."""
