"""Explain a prepared audit's pending shards on the cluster: what each worker is, and which failures
are final.

A :class:`ShardWorker` is built once per Ray actor from the small :class:`PreparedAudit` the driver
made: it loads the model (once), builds the analyzer and opens the existing store under the run's
lease, without probing a sample or fingerprinting the dataset again. ``lrp_tasks.cluster`` runs the
actors; this module never imports Ray."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from lrp_tasks.audit.explainer import (
    TEST_HOOKS,
    BatchExplainer,
    LabelError,
    SampleError,
    ShardExplainer,
    ShardOutcome,
    TargetError,
)
from lrp_tasks.audit.prepare import PreparedAudit
from lrp_tasks.cluster.pool import Shard, run_pool
from lrp_tasks.config import ConfigError
from lrp_tasks.sources import load_model
from lrp_tasks.store import AuditStore, ShardValidationError

DATA_ERRORS = (SampleError, TargetError, LabelError, ConfigError, ShardValidationError)
"""Failures that a retry would only repeat: the shard fails at once, naming the cause."""


class ShardWorker:
    """One worker of a run: the prepared audit's model (loaded once), analyzer and open store.

    The weights it loads must be the ones the driver prepared (their digest is part of the store's
    identity): a weights file replaced during the run is refused when the store is opened."""

    def __init__(self, audit: PreparedAudit, lease: str | None = None, cpus: float = 1.0) -> None:
        torch.set_num_threads(max(1, int(cpus)))
        cfg = audit.config
        explainer = BatchExplainer(cfg, load_model(cfg.model, trusted_code=audit.trusted_code))
        spec = dataclasses.replace(audit.spec, weights_digest=explainer.weights_digest)
        store = AuditStore.create_or_open(cfg.output, spec, mode="resume", lease=lease)
        self.shards = ShardExplainer(explainer, store)

    @property
    def device(self) -> torch.device:
        return self.shards.device

    def run_shard(self, shard_id: int, start: int, stop: int) -> dict[str, Any]:
        return self.shards.explain_shard(shard_id, start, stop).to_dict()


def run_shards(
    audit: PreparedAudit,
    shards: list[Shard],
    on_done: Callable[[ShardOutcome, dict[str, Any]], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    lease: str | None = None,
) -> list[dict[str, Any]]:
    """Explain `shards` of the prepared audit on a Ray actor pool; returns one outcome dict per shard
    (with its node).

    ``lease`` is the token of the run holding the store's lock: workers check it before every commit.
    Raises ShardsFailedError naming the shards that failed every attempt (the rest is committed), and
    WorkerStartError when no worker can start."""
    fields = ShardOutcome.__dataclass_fields__

    def done(out: dict[str, Any]) -> None:
        if on_done is not None:
            on_done(ShardOutcome(**{k: v for k, v in out.items() if k in fields}), out)

    cfg = audit.config
    return run_pool(
        cfg.ray,
        ShardWorker,
        (audit, lease),
        shards,
        cfg.retries,
        final_errors=DATA_ERRORS,
        passed_env=TEST_HOOKS,
        on_done=done,
        on_note=on_note,
    )
