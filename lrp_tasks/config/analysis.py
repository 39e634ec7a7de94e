"""The ``analysis:`` section of an audit config: dataset-level analyses run after the last shard commits.

Today one analysis, SpRAy (spectral relevance analysis, Lapuschkin et al. 2019): per class, cluster the
relevance maps to find the strategies the model uses. ``SpraySpec`` is also what ``lrp-audit spray``
builds from its options, so the command line and a scheduled audit compute the same thing.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from .base import NonNegativeInt, PositiveInt, StrictModel, invalid


def _k(value: object) -> object:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 2):
        return value
    raise invalid("k", f"k is 'auto' (the eigengap decides) or a number of clusters >= 2, got {value!r}")


class SpraySpec(StrictModel):
    """Spectral relevance analysis per class: maps → pooled, normalized → sparse kNN graph → symmetric
    normalized Laplacian → smallest eigenpairs → eigengap k → k-means → ranked clusters, 2-D layout."""

    by: Literal["predicted", "label"] = "predicted"
    """Group samples by the model's predicted class or by their label."""
    classes: list[NonNegativeInt] | None = Field(default=None, min_length=1)
    """Classes to analyse; default: every class that has samples."""
    pool: Annotated[int, Field(strict=True, ge=1, le=256)] = 32
    """Maps are sum-pooled until height and width are at most this."""
    normalize: Literal["l2", "max_abs", "none"] = "l2"
    """Per-map scaling before distances: unit L2 norm (compares shape, not strength), unit max |r|, none."""
    n_neighbors: PositiveInt = 10
    """Neighbours per sample in the kNN affinity graph (CoRelAy's SparseKNN default)."""
    n_eigval: Annotated[int, Field(strict=True, ge=2)] = 32
    """Smallest eigenpairs of the graph Laplacian computed per class (the spectral embedding)."""
    k: Annotated[Literal["auto"] | int, BeforeValidator(_k)] = "auto"
    """Number of clusters of the main result, or ``auto``: the largest eigengap."""
    k_min: Annotated[int, Field(strict=True, ge=2)] = 2
    """Smallest k of the stored range of clusterings (and of the eigengap's choice)."""
    k_max: Annotated[int, Field(strict=True, ge=2)] = 10
    """k-means also runs for every k in ``k_min..k_max``; each gets a column ``cluster_k<k>``."""
    layout: Literal["tsne", "none"] = "tsne"
    """2-D coordinates for plots: t-SNE (scikit-learn) of the spectral embedding."""
    layout_max_samples: PositiveInt = 5_000
    """t-SNE is fitted on at most this many samples of a class; the others are placed at the mean of
    their placed graph neighbours (t-SNE's cost grows faster than the rest of SpRAy)."""
    exact_knn_max: PositiveInt = 20_000
    """Classes up to this size get exact nearest neighbours; larger ones a blocked search (see docs/spray.md)."""
    seed: NonNegativeInt = 0
    """Seed of k-means, t-SNE and the sampling steps: the same audit and settings give the same clusters."""

    @model_validator(mode="after")
    def _ranges(self) -> SpraySpec:
        if self.k_min > self.k_max:
            raise invalid("k_range", f"k_min ({self.k_min}) must not exceed k_max ({self.k_max})", field="k_min")
        if self.k_max > self.n_eigval:
            raise invalid("k_range", f"k_max ({self.k_max}) must not exceed n_eigval ({self.n_eigval})", field="k_max")
        if isinstance(self.k, int) and self.k > self.n_eigval:
            raise invalid("k", f"k ({self.k}) must not exceed n_eigval ({self.n_eigval})", field="k")
        return self


class AnalysisSpec(StrictModel):
    """Analyses the audit flow runs once every shard is committed."""

    spray: SpraySpec | None = None
    """SpRAy per class (spectral relevance analysis); leave out to skip it."""
