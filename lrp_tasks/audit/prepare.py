"""Prepare an audit once, in the driver: every check a run makes, and what workers need to start.

``lrp-audit validate``, the command line's pre-flight and the flow's store preparation all call
:func:`prepare_audit`, so a config that validates runs. It resolves the config's paths once, loads
and checks the model once, explains one sample and fingerprints the dataset once, and returns a
:class:`Preparation`: the driver's explainer and the small :class:`PreparedAudit` handed to every
worker (the resolved config and the store's spec), from which a worker builds its analyzer and opens
the existing store without probing or fingerprinting again.

The checks: the schema (done when the config was loaded), the files and folders it names, the
model (built, weights loaded strictly, accepted by the LRP engine with the composite), one sample
read and explained (layer names of ``storage.layerwise`` and ``storage.crp``, CRP features, target
class or k against the number of classes). Every failure is a ``ConfigError`` naming the config
file and the field."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lrp_tasks.audit.explainer import BatchExplainer, ProbeResult, ShardExplainer
from lrp_tasks.audit.identity import RESULT_NEUTRAL_FIELDS, audit_digest, dataset_fingerprint
from lrp_tasks.config import AuditConfig, ConfigError, FieldError, canonical_json, check_files, resolve_paths
from lrp_tasks.engine import GraphTraceError, InvalidRuleError, ModelCheckError, RuleLayerMismatchError
from lrp_tasks.sources import DatasetError, ModelLoadError, load_model
from lrp_tasks.store import AuditLayout, AuditSpec, AuditStore, ConfigMismatchError, open_audit
from lrp_tasks.store.directory import is_audit_dir
from lrp_tasks.store.relevance import read_group_attrs
from lrp_tasks.store.writer import _adopt_chunk_size, _check_compatible  # the resume's own checks, read-only

__all__ = [
    "RESULT_NEUTRAL_FIELDS",
    "Preparation",
    "PreparedAudit",
    "audit_digest",
    "open_shard_explainer",
    "prepare_audit",
    "resolve_audit",
]


def resolve_audit(cfg: AuditConfig, root: str | Path | None = None) -> AuditConfig:
    """The config with absolute local paths (model, data, output), resolved against ``root`` (the config
    file's directory; None: the working directory), so any worker reads the same files."""
    return resolve_paths(cfg, root)


@dataclass(frozen=True)
class PreparedAudit:
    """What a worker needs to explain shards of a prepared audit: small, picklable, made once."""

    config: AuditConfig
    """The config with absolute local paths."""
    spec: AuditSpec
    """The store's spec: shapes found by the probe, identity (config digest, weights digest, dataset
    fingerprint), the composite as printed."""
    trusted_code: bool = True
    """The config came from a file on the worker (any builder but the standard library's); False: from a
    flow's typed form, whose builder workers import only from the allowlist (``lrp_tasks.sources.builders``)."""


@dataclass
class Preparation:
    """The driver's result of :func:`prepare_audit`: the prepared audit, the driver's explainer (its model
    loaded once) and, with a store mode, the created or reopened store."""

    audit: PreparedAudit
    explainer: BatchExplainer
    source: str
    store: AuditStore | None = None
    probe: ProbeResult | None = None
    """What explaining the first sample showed (classes, shapes, relevance range)."""

    @property
    def spec(self) -> AuditSpec:
        return self.audit.spec

    @property
    def config(self) -> AuditConfig:
        return self.audit.config

    def shard_explainer(self) -> ShardExplainer:
        """Explain shards in this process with the driver's model (library use, tests, benchmarks)."""
        if self.store is None:
            raise ValueError("prepare_audit(..., store_mode='resume' or 'overwrite') opens the store to explain into")
        return ShardExplainer(self.explainer, self.store)


_HANDED_OVER: dict[str, Preparation] = {}
"""Preparations kept for the next :func:`prepare_audit` of the same config in this process (``keep``):
the command line checks a config before Prefect starts and hands the loaded model to the flow."""


def prepare_audit(
    cfg: AuditConfig,
    *,
    root: str | Path | None = None,
    source: str | None = None,
    store_mode: str | None = None,
    device: str | None = None,
    keep: bool = False,
    before_load: Callable[[AuditConfig], None] | None = None,
    trusted_code: bool = True,
) -> Preparation:
    """Run every check of an audit; with ``store_mode`` (``resume``/``overwrite``) also create or
    reopen its store.

    root: the directory relative paths resolve against (the config file's directory; None: the
    working directory). source: how errors name the config (its file). keep: hand this preparation
    to the next call for the same config in this process, which then loads nothing again.
    before_load: called with the resolved config before the model loads (a check that should fail
    fast, such as the command line's "is the output free"). trusted_code: the config comes from a file
    on this machine; False for a flow's typed form (builders from the allowlist only)."""
    source = source or f"audit config {cfg.name!r}"
    try:
        check_files(cfg, root=root, source=source)
        resolved = resolve_audit(cfg, root)
        if before_load is not None:
            before_load(resolved)
        key = canonical_json([resolved.model_dump(mode="json"), str(device), trusted_code])
        preparation = _HANDED_OVER.pop(key, None) or _prepare(resolved, source, device, trusted_code)
        if keep:
            _HANDED_OVER[key] = preparation
        if store_mode is not None:
            preparation.store = AuditStore.create_or_open(resolved.output, preparation.audit.spec, mode=store_mode)
        return preparation
    except ConfigError as exc:
        raise ConfigError(source, exc.errors) from None
    except (ModelLoadError, ModelCheckError, GraphTraceError) as exc:
        raise ConfigError(source, [FieldError("model", _one_paragraph(exc))]) from None
    except (InvalidRuleError, RuleLayerMismatchError) as exc:
        raise ConfigError(source, [FieldError("composite", _one_paragraph(exc))]) from None
    except DatasetError as exc:
        raise ConfigError(source, [FieldError("dataset", _one_paragraph(exc))]) from None


def _prepare(cfg: AuditConfig, source: str, device: str | None, trusted_code: bool) -> Preparation:
    """Load and check the model, explain one sample, fingerprint the dataset: the store's spec."""
    explainer = BatchExplainer(cfg, load_model(cfg.model, trusted_code=trusted_code), device)
    probe = explainer.probe()
    _check_dtype_holds(cfg.storage.dtype, probe)
    dataset = explainer.dataset
    spec = AuditSpec(
        n_samples=len(dataset),
        sample_shape=tuple(dataset.sample_shape),
        n_classes=probe.n_classes,
        shard_size=cfg.shard_size,
        explanations_per_sample=explainer.k,
        dtype=cfg.storage.dtype,
        keep_input=cfg.storage.keep_input,
        n_concepts=probe.n_concepts,
        concept_ids=explainer.concept_ids,
        layerwise=probe.layer_shapes,
        metrics=explainer.metrics.curve_points,
        config=cfg.model_dump(mode="json"),
        operational=RESULT_NEUTRAL_FIELDS,  # the store's digest: audit_digest(cfg)
        dataset=dataset_fingerprint(dataset, _cache_dir(cfg.output)),
        weights_digest=explainer.weights_digest,
        composite=repr(explainer.analyzer),
        class_names=tuple(dataset.class_names) if dataset.class_names else None,
    )
    return Preparation(PreparedAudit(cfg, spec, trusted_code), explainer, source, probe=probe)


def _check_dtype_holds(dtype: str, probe: ProbeResult) -> None:
    """Refuse a store dtype the probe's relevance already overflows (found now, not shards into a run)."""
    if dtype != "float16":
        return
    largest = max(abs(v) for v in probe.relevance_range)
    limit = float(np.finfo(np.float16).max)
    if not np.isfinite(largest) or largest > limit:
        raise ConfigError(
            "",
            [
                FieldError(
                    "storage.dtype",
                    f"the first sample's relevance reaches {largest:.3g}, beyond float16's range "
                    f"(up to {limit:.6g}): use storage.dtype: float32",
                )
            ],
        )


def resume_counts(preparation: Preparation) -> tuple[int, int] | None:
    """(committed, planned) shards of the store the run would resume, read-only; None when the run
    would create or refuse it (see :func:`store_outcome`)."""
    outcome = _store_state(preparation)
    return outcome[1] if isinstance(outcome[1], tuple) else None


def store_outcome(preparation: Preparation) -> str:
    """What ``run`` would do with the output, read-only: created, resumed (with what is committed) or
    refused (and why). Same checks as the store's resume, without taking its lock or writing."""
    text, counts = _store_state(preparation)
    if isinstance(counts, tuple):
        return f"{text} ({counts[0]} of {counts[1]} shards committed)"
    return text


def _store_state(preparation: Preparation) -> tuple[str, tuple[int, int] | None]:
    output, spec = preparation.config.output, preparation.spec
    if "://" in output:
        return f"{output}: a remote store, checked when the run opens it", None
    if not os.path.exists(output) or (os.path.isdir(output) and not os.listdir(output)):
        return f"would be created: {output}", None
    if not is_audit_dir(output):
        return f"refused: {output} is not empty and not an audit store (nothing in it would be touched)", None
    layout = AuditLayout(output)
    try:
        stored = read_group_attrs(layout.zarr_path)
    except (FileNotFoundError, KeyError, ValueError):
        return f"would be created: {output} (an audit directory without a store yet)", None
    try:
        _check_compatible(output, stored, _adopt_chunk_size(stored, spec))
    except ConfigMismatchError as exc:
        return f"refused: {exc} (run with --fresh to replace it)", None
    committed = len(open_audit(output).committed_shards)
    total = -(-spec.n_samples // spec.shard_size)
    return f"would be resumed: {output}", (committed, total)


def estimate_seconds(preparation: Preparation, batch_size: int | None = None) -> tuple[float, int]:
    """Time one batch explained with the driver's model: (estimated seconds for every sample on one
    worker, the batch size timed). Explanation only: no Ray start, store writes or metrics."""
    explainer = preparation.explainer
    n = len(explainer.dataset)
    size = max(1, min(batch_size or preparation.config.batch_size, n))
    batch = explainer.dataset.read(0, size)
    explainer.explain_batch(batch)  # warm-up: first-call costs are not per sample
    began = time.perf_counter()
    explainer.explain_batch(batch)
    return (time.perf_counter() - began) * n / size, size


def _cache_dir(output: str) -> str | None:
    """The store's digest cache, when the output is already an audit directory (never write elsewhere)."""
    return AuditLayout(output).cache_dir if "://" not in output and is_audit_dir(output) else None


def _one_paragraph(exc: BaseException) -> str:
    """The exception's message, indented under the field it is about when it spans lines."""
    return str(exc).strip().replace("\n", "\n    ")


def open_shard_explainer(
    cfg: AuditConfig, *, root: str | Path | None = None, device: str | None = None, mode: str = "resume"
) -> ShardExplainer:
    """Prepare the audit and open its store in this process, ready to explain shards with the driver's
    model: an audit without Ray or Prefect (library use, notebooks, tests, benchmarks)."""
    return prepare_audit(cfg, root=root, device=device, store_mode=mode).shard_explainer()
