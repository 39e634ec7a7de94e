"""Explain one shard: read its samples, run the analyzer, summarise, write whole chunks, commit.

Two pieces, built once per worker and serving many shards:

* :class:`BatchExplainer` turns the config into the engine's objects for one loaded model (analyzer,
  layerwise relevances, CRP, perturbation metrics, the dataset reader) and explains batches. It checks
  what can only be checked against the model (layer names, CRP features, the target against the
  classes); :meth:`BatchExplainer.probe` explains one sample to learn the shapes a store is made with.
* :class:`ShardExplainer` explains a shard of an open store and commits it. Explaining a shard is
  idempotent: a committed shard is skipped.

The driver prepares an audit once (``lrp_tasks.audit.prepare``); a worker builds these two from the
prepared audit and opens the existing store (``lrp_tasks.audit.run``)."""

from __future__ import annotations

import collections
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lrp_tasks.audit.batch_metrics import BatchMetrics, MetricsConfigError
from lrp_tasks.audit.composite import build_composite
from lrp_tasks.audit.summaries import summary_table
from lrp_tasks.config import AuditConfig, ConfigError, FieldError
from lrp_tasks.engine import (
    CRP,
    LRP,
    Explanation,
    IndexedFeatures,
    TopK,
    TopNFeatures,
    UnmatchedSelectorError,
    canonize,
    strip_softmax,
)
from lrp_tasks.sources import LoadedModel, open_dataset
from lrp_tasks.sources.base import Batch
from lrp_tasks.store import AuditStore, ShardResult

CRASH_HOOK = "LRP_AUDIT_TEST_CRASH_SHARD"
"""Test hook: the first attempt of this shard id kills its worker process (fault-tolerance tests);
with LRP_AUDIT_TEST_CRASH_ALWAYS=1 every attempt does."""
CRASH_ALWAYS_HOOK = "LRP_AUDIT_TEST_CRASH_ALWAYS"
SLOW_HOOK = "LRP_AUDIT_TEST_SHARD_SECONDS"
"""Test hook: each shard takes at least this long, so a test can kill a run midway."""
TEST_HOOKS = (CRASH_HOOK, CRASH_ALWAYS_HOOK, SLOW_HOOK)


class TargetError(ValueError):
    """The configured target cannot be explained for these samples (e.g. no labels)."""


class LabelError(ValueError):
    """A sample's label is outside the model's classes (and is not -1, "unlabelled")."""


def first_bad_label(labels: np.ndarray, n_classes: int) -> tuple[int, int] | None:
    """(position of the first, count) of labels that are neither a class of the model nor -1."""
    bad = (labels < -1) | (labels >= n_classes)
    return (int(np.flatnonzero(bad)[0]), int(bad.sum())) if bool(bad.any()) else None


def check_labels(labels: np.ndarray, n_classes: int, ids: list[str]) -> None:
    """Labels must be classes of the model, or -1 for an unlabelled sample (``dataset.ignore_label``
    turns another value into -1): a label 99 or -5 would be counted as a wrong prediction."""
    found = first_bad_label(labels, n_classes)
    if found is None:
        return
    first, count = found
    raise label_error(ids[first], int(labels[first]), n_classes, count)


def label_error(sample_id: str, label: int, n_classes: int, count: int) -> LabelError:
    return LabelError(
        f"sample {sample_id!r} has label {label}, not one of the model's {n_classes} classes "
        f"(0..{n_classes - 1}; {count} such sample(s)); -1 marks an unlabelled sample, and "
        "dataset.ignore_label names another value that does"
    )


class SampleError(ValueError):
    """A sample the model cannot be explained on (NaN or inf values); names the samples."""


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


@dataclass(frozen=True)
class ProbeResult:
    """What one explained sample tells about the audit's arrays."""

    n_classes: int
    layer_shapes: dict[str, tuple[int, ...]]
    n_concepts: int
    relevance_range: tuple[float, float] = (0.0, 0.0)
    """Smallest and largest relevance of the probe's map (and layerwise maps): what the store must hold."""


def default_device(device: str | None = None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


class BatchExplainer:
    """The engine's objects for one audit config and one loaded model: analyzer (and CRP, layerwise
    relevances, perturbation metrics), the dataset reader, and the device they run on.

    Building it checks the config against the model: layer names of ``storage.layerwise`` and
    ``storage.crp.layer``, the composite's selectors, the metrics against the sample shape."""

    def __init__(self, cfg: AuditConfig, loaded: LoadedModel, device: str | torch.device | None = None) -> None:
        self.cfg = cfg
        self.device = default_device(str(device) if device is not None else None)
        self.model = canonize(strip_softmax(loaded.module)).to(self.device).eval()
        self.weights_digest = loaded.weights_digest
        try:
            # conservation is measured per sample into the summaries, not warned about
            self.analyzer = LRP(self.model, build_composite(cfg.composite), conservation_tolerance=None)
        except UnmatchedSelectorError as exc:
            raise self._config_error("composite.rules", str(exc)) from exc
        self.layerwise = self._check_layerwise()
        self.crp = self._build_crp()
        self.dataset = open_dataset(cfg)
        self.metrics = self._build_metrics()

    # -- configuration ----------------------------------------------------------------------
    @property
    def k(self) -> int:
        target = self.cfg.target
        return target.k if target.kind == "top_k" else 1

    def _config_error(self, field: str, message: str) -> ConfigError:
        return ConfigError(f"audit config {self.cfg.name!r}", [FieldError(field, message)])

    def _check_layerwise(self) -> list[str]:
        names = list(self.cfg.storage.layerwise)
        valid = self.analyzer.layer_names
        for i, name in enumerate(names):
            if not self.analyzer.knows(name):
                raise self._config_error(
                    f"storage.layerwise[{i}]", f"the model has no layer named {name!r}; its layers are {valid}"
                )
        return names

    def _build_metrics(self) -> BatchMetrics:
        try:
            return BatchMetrics(self.cfg.metrics, tuple(self.dataset.sample_shape))
        except MetricsConfigError as exc:
            raise self._config_error(exc.field, str(exc)) from exc

    def _check_target(self, n_classes: int) -> None:
        target = self.cfg.target
        if target.kind == "class" and target.index >= n_classes:
            raise self._config_error(
                "target.index", f"class {target.index} does not exist: the model has {n_classes} classes"
            )
        if target.kind == "top_k" and target.k > n_classes:
            raise self._config_error("target.k", f"k={target.k} exceeds the model's {n_classes} classes")

    def _check_all_labels(self, n_classes: int) -> None:
        """Every label of the dataset against the model's classes (read without the samples)."""
        labels = self.dataset.label_array()
        found = None if labels is None else first_bad_label(labels, n_classes)
        if labels is None or found is None:
            return
        first, count = found
        sample_id = self.dataset.read(first, first + 1).ids[0]  # as the summaries name it
        exc = label_error(sample_id, int(labels[first]), n_classes, count)
        raise self._config_error("dataset", f"{exc} (sample index {first})")

    def _build_crp(self) -> CRP | None:
        spec = self.cfg.storage.crp
        if spec is None:
            return None
        features = TopNFeatures(spec.features) if isinstance(spec.features, int) else IndexedFeatures(*spec.features)
        if not self.analyzer.knows(spec.layer):
            raise self._config_error(
                "storage.crp.layer",
                f"the model has no layer named {spec.layer!r}; its layers are {self.analyzer.layer_names}",
            )
        try:
            return CRP(self.analyzer, spec.layer, features)
        except (TypeError, ValueError) as exc:  # e.g. a graph (non-sequential) model
            raise self._config_error("storage.crp", str(exc)) from exc

    def _probe_crp(self, x: torch.Tensor) -> int:
        """Number of concept maps per sample, checked on the probe sample against the layer's channels."""
        spec = self.cfg.storage.crp
        if self.crp is None or spec is None:
            return 0
        try:
            concepts = self.crp.analyze(x, None, seed=self.cfg.seed)
        except (ValueError, NotImplementedError) as exc:
            raise self._config_error("storage.crp", f"CRP at layer {spec.layer!r} fails: {exc}") from exc
        channels = int(concepts.extras["all_concept_relevances"].shape[1])
        if isinstance(spec.features, int) and spec.features > channels:
            raise self._config_error(
                "storage.crp.features",
                f"top {spec.features} features asked for, but layer {spec.layer!r} has {channels} channels",
            )
        return int(concepts.extras["features"].shape[1])

    def layer_relevances(self, expl: Explanation) -> dict[str, torch.Tensor]:
        """Relevance at the output of each configured layer, in config order."""
        if not self.layerwise:
            return {}
        by_layer = self.analyzer.relevance_by_layer(expl, self.layerwise)
        missing = [name for name in self.layerwise if name not in by_layer]
        if missing:  # graph models: a module whose output receives no relevance
            raise RuntimeError(f"the engine gave no layerwise relevance for layers {missing}")
        return {name: by_layer[name] for name in self.layerwise}

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

    def probe(self) -> ProbeResult:
        """Explain the first sample: the number of classes, the shape of each layerwise relevance and the
        number of concept maps, checking the target and CRP settings against them."""
        if len(self.dataset) == 0:
            raise self._config_error("dataset", f"the dataset holds no samples ({self.dataset.dataset_id})")
        x = self.dataset.read(0, 1).x.to(self.device)
        try:
            expl = self.analyzer.analyze(x, None, layerwise_relevances=bool(self.layerwise), seed=self.cfg.seed)
        except (RuntimeError, ValueError) as exc:  # another input shape than the dataset's; NaN outputs
            raise self._config_error(
                "model", f"explaining the first sample (shape {tuple(x.shape[1:])}) fails: {exc}"
            ) from exc
        n_classes = int(expl.output.shape[1])
        self._check_target(n_classes)
        self._check_all_labels(n_classes)
        layers = self.layer_relevances(expl)
        layer_shapes = {name: tuple(r.shape[1:]) for name, r in layers.items()}
        maps = [expl.val.detach(), *(r.detach() for r in layers.values())]
        low = min(float(m.min()) for m in maps if m.numel())
        high = max(float(m.max()) for m in maps if m.numel())
        return ProbeResult(n_classes, layer_shapes, self._probe_crp(x), (low, high))

    @property
    def concept_ids(self) -> tuple[int, ...] | None:
        spec = self.cfg.storage.crp
        if spec is None or isinstance(spec.features, int):
            return None
        return tuple(spec.features)

    # -- work -------------------------------------------------------------------------------
    def explain_batch(self, batch: Batch) -> tuple[Explanation, Explanation | None]:
        """The LRP explanation (with layerwise relevances when the config keeps some) and the CRP
        explanation of the first target (None without ``storage.crp``)."""
        x = batch.x.to(self.device)
        _check_samples(batch)
        expl = self.analyzer.analyze(
            x, self.selection(batch), layerwise_relevances=bool(self.layerwise), seed=self.cfg.seed
        )
        concepts = None
        if self.crp is not None:
            selection = expl.output_selection if expl.output_selection.dim() == 1 else expl.output_selection[:, 0]
            concepts = self.crp.analyze(x, selection, seed=self.cfg.seed)
        return expl, concepts


class ShardExplainer:
    """Explains shards of one audit into its open store and commits each (one per worker)."""

    def __init__(self, explainer: BatchExplainer, store: AuditStore) -> None:
        self.explainer = explainer
        self.store = store
        self.cfg = explainer.cfg
        self.worker = f"{os.uname().nodename}:{os.getpid()}:{explainer.device}"

    @property
    def spec(self) -> Any:
        """The store's spec (shapes and identity) this explainer writes."""
        return self.store.spec

    # the batch explainer's pieces, for callers that explain or inspect outside a shard
    @property
    def device(self) -> torch.device:
        return self.explainer.device

    @property
    def analyzer(self) -> LRP:
        return self.explainer.analyzer

    @property
    def dataset(self) -> Any:
        return self.explainer.dataset

    @property
    def model(self) -> torch.nn.Module:
        return self.explainer.model

    def explain_batch(self, batch: Batch) -> tuple[Explanation, Explanation | None]:
        return self.explainer.explain_batch(batch)

    def explain_shard(self, shard_id: int, start: int, stop: int) -> ShardOutcome:
        """Explain samples [start, stop) and commit them as shard `shard_id` (skipped if committed)."""
        began = time.perf_counter()
        ex = self.explainer
        if self.store.is_committed(shard_id):
            return ShardOutcome(shard_id, start, stop, False, 0.0, 0, worker=self.worker)
        _crash_for_tests(self.cfg.output, shard_id)
        delay = float(os.environ.get(SLOW_HOOK, "0"))
        parts: dict[str, list[np.ndarray]] = collections.defaultdict(list)
        labels, index, ids = [], [], []
        for lo in range(start, stop, self.cfg.batch_size):
            batch = ex.dataset.read(lo, min(lo + self.cfg.batch_size, stop))
            check_labels(batch.labels, self.spec.n_classes, batch.ids)
            expl, concepts = ex.explain_batch(batch)
            parts["val"].append(_numpy(expl.val))
            parts["logits"].append(_numpy(expl.output))
            parts["target"].append(expl.output_selection.cpu().numpy())
            seed = expl.output.gather(1, expl.output_selection.reshape(len(batch), -1))
            if self.cfg.seed == "one-hot":
                seed = torch.ones_like(seed)
            parts["seed"].append(seed.reshape(expl.output_selection.shape).double().cpu().numpy())
            if self.cfg.storage.keep_input:
                parts["input"].append(batch.x.numpy())
            for name, relevance in ex.layer_relevances(expl).items():
                parts[f"layer:{name}"].append(_numpy(relevance))
            if ex.metrics:  # faithfulness of this batch's explanations, on the worker's device
                curves = ex.metrics.curves(
                    ex.model, batch.x.to(ex.device), expl.val, expl.output_selection, batch.index
                )
                for name, curve in curves.items():
                    parts[f"metric:{name}"].append(curve)
            if concepts is not None:
                parts["concepts"].append(_numpy(concepts.val))
                parts["concept_channels"].append(concepts.extras["features"].cpu().numpy().astype(np.int64))
                parts["concept_relevance"].append(_numpy(concepts.extras["concept_relevances"]))
            labels.append(batch.labels)
            index.append(batch.index)
            ids.extend(batch.ids)
        arrays = {k: np.concatenate(v) for k, v in parts.items()}
        curves = {name: arrays[f"metric:{name}"] for name in ex.metrics.curve_points}
        summaries = summary_table(
            arrays["val"],
            arrays["logits"],
            arrays["target"],
            arrays["seed"],
            np.concatenate(labels),
            np.concatenate(index),
            ids,
            ex.dataset.dataset_id,
            shard_id,
            self.store.audit_id,
            metrics=ex.metrics.summary_columns(curves) if curves else None,
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
                concept_channels=arrays.get("concept_channels"),
                concept_relevance=arrays.get("concept_relevance"),
                layerwise={name: arrays[f"layer:{name}"] for name in ex.layerwise} or None,
                metrics=curves or None,
            )
        )
        if delay:
            time.sleep(max(0.0, delay - (time.perf_counter() - began)))
        errors = np.abs(summaries.column("conservation_error").to_numpy())
        first = summaries.column("target_rank").to_numpy() == 0
        predicted, counts = np.unique(summaries.column("predicted").to_numpy()[first], return_counts=True)
        return ShardOutcome(
            shard_id,
            start,
            stop,
            True,
            time.perf_counter() - began,
            stop - start,
            float(errors.mean()),
            float(errors.max()),
            {int(c): int(n) for c, n in zip(predicted, counts, strict=True)},
            self.worker,
        )


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def _check_samples(batch: Batch) -> None:
    finite = torch.isfinite(batch.x).flatten(start_dim=1).all(dim=1)
    if not bool(finite.all()):
        bad = [batch.ids[i] for i in torch.nonzero(~finite).flatten().tolist()]
        raise SampleError(
            f"{len(bad)} sample(s) contain NaN or inf values and cannot be explained: ids {bad[:5]}"
            + (" ..." if len(bad) > 5 else "")
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
