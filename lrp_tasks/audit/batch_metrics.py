"""The audit's perturbation metrics on one explained batch: config → :class:`RegionPerturbation`s,
curves for every explanation (top-k included), and the AOPC columns of the summaries.

Runs on the worker right after the batch is explained, on the worker's device, with the canonized model
the analyzer explains (the same function as the user's model)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from lrp_tasks.config.metrics import MetricsSpec
from lrp_tasks.metrics import RegionPerturbation, aopc
from lrp_tasks.store.schema import PERTURBATION_METRICS


class MetricsConfigError(ValueError):
    """A metric setting does not fit the data (e.g. more steps than regions); ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class BatchMetrics:
    """The configured perturbation metrics (``metrics.region_perturbation``, ``metrics.pixel_flipping``)."""

    def __init__(self, spec: MetricsSpec, sample_shape: Sequence[int]) -> None:
        self.metrics: dict[str, RegionPerturbation] = {}
        for name in PERTURBATION_METRICS:
            cfg = getattr(spec, name)
            if cfg is None:
                continue
            rp = RegionPerturbation(
                patch_size=getattr(cfg, "patch_size", 1),
                steps=cfg.steps,
                orders=tuple(cfg.orders),
                baseline=cfg.baseline,
                seed=cfg.seed,
                batch_size=spec.batch_size,
            )
            try:
                rp.check_fits(sample_shape)
            except ValueError as exc:
                field = f"metrics.{name}.steps" if len(sample_shape) in (2, 3) else f"metrics.{name}"
                raise MetricsConfigError(field, str(exc)) from exc
            self.metrics[name] = rp

    def __bool__(self) -> bool:
        return bool(self.metrics)

    @property
    def curve_points(self) -> dict[str, int]:
        """Curve name (``<metric>_<order>``) → points per curve (steps + 1), for the store's spec."""
        return {f"{name}_{order}": rp.steps + 1 for name, rp in self.metrics.items() for order in rp.orders}

    def curves(
        self, model: nn.Module, x: torch.Tensor, relevance: torch.Tensor, target: torch.Tensor, index: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Curves of every explanation of the batch: ``(n, points)``, or ``(n, k, points)`` for top-k
        targets (``target`` (n, k), ``relevance`` (n, k, *S)), float32 numpy.

        Random orders and noise are keyed by ``sample_index * k + rank``: the same explanation gets the
        same numbers in any shard, batch or retry."""
        n = x.shape[0]
        k = 1 if target.dim() == 1 else target.shape[1]
        if k > 1:
            x = x.repeat_interleave(k, dim=0)
            relevance = relevance.reshape(n * k, *relevance.shape[2:])
        keys = (np.asarray(index, np.int64)[:, None] * k + np.arange(k)).reshape(-1)
        out = {}
        for name, rp in self.metrics.items():
            for order, curve in rp.curves(model, x, relevance, target.reshape(-1), keys=keys).items():
                arr = curve.float().cpu().numpy()
                out[f"{name}_{order}"] = arr.reshape(n, k, -1) if k > 1 else arr
        return out

    def summary_columns(self, curves: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """AOPC per order and the MoRF − random gap, one value per summary row (sample-major, then rank),
        computed in float64 from the curves as stored (float32)."""
        columns: dict[str, np.ndarray] = {}
        for name, rp in self.metrics.items():
            for order in rp.orders:
                columns[f"{name}_aopc_{order}"] = aopc(curves[f"{name}_{order}"]).reshape(-1)
            if "morf" in rp.orders and "random" in rp.orders:
                columns[f"{name}_morf_minus_random"] = columns[f"{name}_aopc_morf"] - columns[f"{name}_aopc_random"]
        return columns
