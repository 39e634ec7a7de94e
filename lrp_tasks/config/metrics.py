"""The ``metrics:`` section: faithfulness scores computed on the worker for every explanation, and the
audit-level model-randomisation sanity check. Everything is off unless configured.

metrics:
  region_perturbation: {patch_size: 2, steps: 16, orders: [morf, lerf, random], baseline: black, seed: 0}
  pixel_flipping: {steps: 32}            # 1×1 regions
  efficient_mprt: {samples: 64, seed: 0, n_bins: 100}
  batch_size: 2048                        # perturbed inputs per forward pass
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from .base import NonNegativeInt, PositiveInt, StrictModel
from .limits import capped

Order = Literal["morf", "lerf", "random"]
Baseline = Literal["black", "mean", "uniform"]
Bins = Annotated[int, Field(strict=True, ge=2)]


class _PerturbationSpec(StrictModel):
    steps: PositiveInt = Field(description="regions replaced one after the other; the curve has steps + 1 points")
    orders: list[Order] = Field(
        default_factory=lambda: ["morf", "lerf", "random"],
        description="most relevant first (morf), least relevant first (lerf), seeded random order (random)",
    )
    baseline: Baseline = Field(
        "black",
        description="black: the sample's minimum; mean: its per-channel mean; uniform: seeded noise in [min, max]",
    )
    seed: NonNegativeInt = Field(0, description="seed of the random order and the uniform-noise baseline")

    @field_validator("orders")
    @classmethod
    def _orders(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("give at least one order (morf, lerf, random)")
        repeated = sorted({o for o in value if value.count(o) > 1})
        if repeated:
            raise ValueError(f"orders must not repeat: {', '.join(repeated)}")
        return value


class RegionPerturbationSpec(_PerturbationSpec):
    """Region perturbation (Samek et al. 2017): a grid of patch_size × patch_size regions."""

    patch_size: PositiveInt = Field(8, description="side of the square regions, in pixels")


class PixelFlippingSpec(_PerturbationSpec):
    """Pixel flipping: region perturbation with 1×1 regions (each pixel with all its channels)."""


class EfficientMPRTSpec(StrictModel):
    """Efficient MPRT (Hedström et al. 2023) on a random subset of samples, once per audit."""

    samples: PositiveInt = Field(64, description="samples drawn (seeded) from the dataset")
    seed: NonNegativeInt = Field(0, description="seed of the sample draw and of the model randomisation")
    n_bins: Bins = Field(100, description="histogram bins of the discrete entropy (complexity)")


class MetricsSpec(StrictModel):
    """Faithfulness metrics; each is off while absent."""

    region_perturbation: RegionPerturbationSpec | None = None
    """Region perturbation curves and AOPC per explanation (off when absent)."""
    pixel_flipping: PixelFlippingSpec | None = None
    """Pixel flipping curves and AOPC per explanation (off when absent)."""
    efficient_mprt: EfficientMPRTSpec | None = None
    """Efficient MPRT model-randomisation sanity check, once per audit (off when absent)."""
    batch_size: capped(PositiveInt, "metrics.batch_size") = Field(
        1024, description="perturbed inputs per forward pass on the worker"
    )

    @property
    def perturbation_enabled(self) -> bool:
        return self.region_perturbation is not None or self.pixel_flipping is not None
