"""Explain one shard: load its samples, run the analyzer, summarise, write whole chunks, commit.

A :class:`ShardExplainer` holds everything that is expensive to build (the model, canonized and
wrapped in an analyzer; the dataset reader; the store handle) so that one worker builds it once
and serves many shards. Explaining a shard is idempotent: a committed shard is skipped."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lrp_tasks.composite_spec import build_composite
from lrp_tasks.config import AuditConfig, config_digest, resolve_paths
from lrp_tasks.engine import (
    CRP,
    LRP,
    Explanation,
    IndexedFeatures,
    TopK,
    TopNFeatures,
    canonize,
    strip_softmax,
)
from lrp_tasks.sources import load_model, open_dataset
from lrp_tasks.sources.base import Batch
from lrp_tasks.store import AuditSpec, AuditStore, ShardResult
from lrp_tasks.summaries import summarize

CRASH_HOOK = "LRP_AUDIT_TEST_CRASH_SHARD"
"""Test hook: the first attempt of this shard id kills its worker process (fault-tolerance tests);
with LRP_AUDIT_TEST_CRASH_ALWAYS=1 every attempt does."""
CRASH_ALWAYS_HOOK = "LRP_AUDIT_TEST_CRASH_ALWAYS"
SLOW_HOOK = "LRP_AUDIT_TEST_SHARD_SECONDS"
"""Test hook: each shard takes at least this long, so a test can kill a run midway."""
TEST_HOOKS = (CRASH_HOOK, CRASH_ALWAYS_HOOK, SLOW_HOOK)


class TargetError(ValueError):
    """The configured target cannot be explained for these samples (e.g. no labels)."""


@dataclass(frozen=True)
class ShardOutcome:
    """The small result a worker sends back for one shard."""

    shard_id: int
    start: int
    stop: int
    explained: bool
    """False when the shard was already committed and skipped."""
    seconds: float
    samples: int
    conservation_error_abs_mean: float = 0.0
    conservation_error_abs_max: float = 0.0
    predicted_counts: dict[int, int] | None = None
    worker: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def audit_config_for_workers(cfg: AuditConfig, root: str | Path | None = None) -> AuditConfig:
    """The config with absolute paths (model, data, output), so any worker reads the same files."""
    resolved = resolve_paths(cfg, root)
    output = resolved.output
    if "://" not in output:
        output = str((Path(root) if root else Path.cwd()).joinpath(output).absolute())
    return resolved.model_copy(update={"output": output})


class ShardExplainer:
    """Model, analyzer, dataset reader and store handle of one audit, built once per worker."""

    def __init__(
        self, cfg: AuditConfig, digest: str | None = None, device: str | None = None, create_mode: str = "resume"
    ) -> None:
        self.cfg = cfg
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        loaded = load_model(cfg.model)
        model = canonize(strip_softmax(loaded.module)).to(self.device).eval()
        self.analyzer = LRP(model, build_composite(cfg.composite))
        self.dataset = open_dataset(cfg)
        self.crp = self._build_crp()
        probe = self.dataset.read(0, 1)
        with torch.no_grad():
            n_classes = int(self.analyzer.model(probe.x.to(self.device)).shape[1])
        self.spec = AuditSpec(
            n_samples=len(self.dataset),
            sample_shape=tuple(self.dataset.sample_shape),
            n_classes=n_classes,
            shard_size=cfg.shard_size,
            explanations_per_sample=self.k,
            dtype=cfg.storage.dtype,
            keep_input=cfg.storage.keep_input,
            n_concepts=self._n_concepts(),
            concept_ids=self._concept_ids(),
            config=cfg.model_dump(mode="json"),
            config_digest=digest or config_digest(cfg),
            weights_digest=loaded.weights_digest,
            composite=repr(self.analyzer),
        )
        self.store = AuditStore.create_or_open(cfg.output, self.spec, mode=create_mode)
        self.worker = f"{os.uname().nodename}:{os.getpid()}:{self.device}"

    # -- configuration ----------------------------------------------------------------------
    @property
    def k(self) -> int:
        target = self.cfg.target
        return target.k if target.kind == "top_k" else 1

    def _build_crp(self) -> CRP | None:
        spec = self.cfg.storage.crp
        if spec is None:
            return None
        features = (
            TopNFeatures(spec.features) if isinstance(spec.features, int) else IndexedFeatures(*spec.features)
        )
        return CRP(self.analyzer, spec.layer, features)

    def _n_concepts(self) -> int:
        spec = self.cfg.storage.crp
        if spec is None:
            return 0
        return spec.features if isinstance(spec.features, int) else len(spec.features)

    def _concept_ids(self) -> tuple[int, ...] | None:
        spec = self.cfg.storage.crp
        if spec is None or isinstance(spec.features, int):
            return None
        return tuple(spec.features)

    def selection(self, batch: Batch) -> Any:
        """The engine's output selection for the configured target."""
        target = self.cfg.target
        if target.kind == "predicted":
            return None
        if target.kind == "class":
            return target.index
        if target.kind == "top_k":
            return TopK(target.k)
        if (batch.labels < 0).any():
            missing = [batch.ids[i] for i in np.flatnonzero(batch.labels < 0)[:3]]
            raise TargetError(f"target 'label' needs labelled samples; no label for {missing}")
        return torch.as_tensor(batch.labels, dtype=torch.long, device=self.device)

    # -- work -------------------------------------------------------------------------------
    def explain_batch(self, batch: Batch) -> tuple[Explanation, Explanation | None]:
        x = batch.x.to(self.device)
        expl = self.analyzer.analyze(x, self.selection(batch), seed=self.cfg.seed)
        concepts = None
        if self.crp is not None:
            selection = expl.output_selection if expl.output_selection.dim() == 1 else expl.output_selection[:, 0]
            concepts = self.crp.analyze(x, selection, seed=self.cfg.seed)
        return expl, concepts

    def explain_shard(self, shard_id: int, start: int, stop: int) -> ShardOutcome:
        """Explain samples [start, stop) and commit them as shard `shard_id` (skipped if committed)."""
        began = time.perf_counter()
        if self.store.is_committed(shard_id):
            return ShardOutcome(shard_id, start, stop, False, 0.0, 0, worker=self.worker)
        _crash_for_tests(self.cfg.output, shard_id)
        delay = float(os.environ.get(SLOW_HOOK, "0"))
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("val", "logits", "target", "seed", "input", "concepts")}
        labels, index, ids = [], [], []
        for lo in range(start, stop, self.cfg.batch_size):
            batch = self.dataset.read(lo, min(lo + self.cfg.batch_size, stop))
            expl, concepts = self.explain_batch(batch)
            parts["val"].append(expl.val.float().cpu().numpy())
            parts["logits"].append(expl.output.float().cpu().numpy())
            parts["target"].append(expl.output_selection.cpu().numpy())
            seed = expl.output.gather(1, expl.output_selection.reshape(len(batch), -1))
            if self.cfg.seed == "one-hot":
                seed = torch.ones_like(seed)
            parts["seed"].append(seed.reshape(expl.output_selection.shape).double().cpu().numpy())
            if self.cfg.storage.keep_input:
                parts["input"].append(batch.x.numpy())
            if concepts is not None:
                parts["concepts"].append(concepts.val.float().cpu().numpy())
            labels.append(batch.labels)
            index.append(batch.index)
            ids.extend(batch.ids)
        arrays = {k: np.concatenate(v) for k, v in parts.items() if v}
        summaries = summarize(
            arrays["val"],
            arrays["logits"],
            arrays["target"],
            arrays["seed"],
            np.concatenate(labels),
            np.concatenate(index),
            ids,
            self.dataset.dataset_id,
            shard_id,
            self.store.audit_id,
        )
        self.store.write_shard(
            ShardResult(
                shard_id=shard_id,
                start=start,
                stop=stop,
                relevance=arrays["val"],
                logits=arrays["logits"],
                target=arrays["target"],
                summaries=summaries,
                input=arrays.get("input"),
                concepts=arrays.get("concepts"),
            )
        )
        if delay:
            time.sleep(max(0.0, delay - (time.perf_counter() - began)))
        errors = summaries["conservation_error"].abs()
        predicted = summaries.loc[summaries["target_rank"] == 0, "predicted"].value_counts()
        return ShardOutcome(
            shard_id,
            start,
            stop,
            True,
            time.perf_counter() - began,
            stop - start,
            float(errors.mean()),
            float(errors.max()),
            {int(c): int(n) for c, n in predicted.items()},
            self.worker,
        )


def _crash_for_tests(output: str, shard_id: int) -> None:
    """Kill this process on the first attempt of the shard named by LRP_AUDIT_TEST_CRASH_SHARD."""
    wanted = os.environ.get(CRASH_HOOK)
    if wanted is None or int(wanted) != shard_id:
        return
    marker = Path(output) / f".test-crashed-shard-{shard_id}"
    if marker.exists() and os.environ.get(CRASH_ALWAYS_HOOK) != "1":
        return
    marker.touch()
    os._exit(13)
