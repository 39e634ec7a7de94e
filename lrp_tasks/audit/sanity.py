"""The audit-level model-randomisation sanity check (Efficient MPRT) on a seeded subset of samples.

Runs once per audit after the shards are committed: it draws ``metrics.efficient_mprt.samples`` of the
committed samples, explains them for the targets the audit explained (the first one for top-k) with the
trained model and with a fully randomised copy, using the audit's composite, and records the result in
the store's group attributes (``sanity_checks.efficient_mprt``)."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch

from lrp_tasks.audit.composite import build_composite
from lrp_tasks.config import AuditConfig
from lrp_tasks.engine import LRP, canonize, strip_softmax
from lrp_tasks.metrics import efficient_mprt, randomize_parameters
from lrp_tasks.sources import load_model, open_dataset
from lrp_tasks.store import open_audit
from lrp_tasks.store.attributes import set_audit_attribute

ATTRIBUTE = "sanity_checks"
LRP_TOLERANCE = inspect.signature(LRP).parameters["conservation_tolerance"].default


def run_efficient_mprt(cfg: AuditConfig, device: str = "cpu", trusted_code: bool = True) -> dict[str, Any] | None:
    """Run the check if the config asks for it; returns the record written to the store (or None).
    trusted_code: as in ``load_model`` (False: a flow's typed form, builders from the allowlist only)."""
    spec = cfg.metrics.efficient_mprt
    if spec is None:
        return None
    reader = open_audit(cfg.output)
    committed = reader.committed_samples
    if not len(committed):
        return None
    rng = np.random.default_rng(spec.seed)
    pick = np.sort(rng.choice(committed, size=min(spec.samples, len(committed)), replace=False))
    dataset = open_dataset(cfg)
    x = torch.cat([dataset.read(int(i), int(i) + 1).x for i in pick]).to(device)
    stored = reader.dataset["target"].sel(sample=pick).values
    target = torch.as_tensor(stored if stored.ndim == 1 else stored[:, 0], dtype=torch.long, device=device)

    loaded = load_model(cfg.model, trusted_code=trusted_code)
    randomized = randomize_parameters(loaded.module, spec.seed)
    trained = canonize(strip_softmax(loaded.module)).to(device).eval()
    randomized = canonize(strip_softmax(randomized)).to(device).eval()

    def explain(model: torch.nn.Module, inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        # A randomised model's relevance is not expected to conserve (its biases are random too): a
        # conservation warning about it says nothing about the audit, so its check is off.
        tolerance = None if model is randomized else LRP_TOLERANCE
        lrp = LRP(model, build_composite(cfg.composite), conservation_tolerance=tolerance)
        return lrp.analyze(inputs, classes, seed=cfg.seed).val

    result = efficient_mprt(explain, trained, randomized, x, target, pick, spec.n_bins, spec.seed)
    record = result.summary()
    set_audit_attribute(reader.path, ATTRIBUTE, {"efficient_mprt": record})
    return record
