"""The audit configuration: one YAML file describes one audit.

``AuditConfig`` is also the Prefect flow parameter, so it stays JSON-schema friendly: unions are
discriminated by a literal field (``kind``, ``preset``) and every field has a plain JSON type.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from .analysis import AnalysisSpec
from .base import (
    Bool,
    NonEmptyStr,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    StrictModel,
    invalid,
)
from .composite import CompositeSpec, EpsilonPlusFlatSpec
from .dataset_spec import DatasetSpec, DigitsSpec, ImageFolderSpec, Preprocessing
from .limits import capped
from .metrics import MetricsSpec
from .model_spec import ModelSpec

# -- target ---------------------------------------------------------------------------------------


class PredictedTarget(StrictModel):
    """Explain the class the model predicts."""

    kind: Literal["predicted"]


class LabelTarget(StrictModel):
    """Explain the true label (needs labelled data)."""

    kind: Literal["label"]


class ClassTarget(StrictModel):
    """Explain one fixed class for every sample."""

    kind: Literal["class"]
    index: NonNegativeInt
    """Class (output index) explained for every sample; must be below the model's number of classes."""


class TopKTarget(StrictModel):
    """Explain each of the k highest-scoring classes."""

    kind: Literal["top_k"]
    k: PositiveInt
    """Number of explanations per sample: the k highest-scoring classes, best first."""


TargetSpec = Annotated[
    PredictedTarget | LabelTarget | ClassTarget | TopKTarget,
    Field(discriminator="kind"),
    BeforeValidator(
        lambda v: {"kind": v} if isinstance(v, str) else v,
        json_schema_input_type=Literal["predicted", "label"] | PredictedTarget | LabelTarget | ClassTarget | TopKTarget,
    ),
]
"""``{kind: predicted}`` (or just ``predicted``), ``label``, ``{kind: class, index: 3}``,
``{kind: top_k, k: 3}``."""

# -- storage --------------------------------------------------------------------------------------


def _features(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise invalid("features", f"a top-n feature count must be >= 1, got {value}")
        return value
    if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        if min(value) < 0:
            raise invalid("features", f"feature indices must be >= 0, got {value}")
        if len(set(value)) != len(value):
            raise invalid("features", f"feature indices must not repeat, got {value}")
        return value
    raise invalid(
        "features",
        f"features is a top-n count (an int >= 1) or a non-empty list of channel indices, got {value!r}",
    )


class CRPSpec(StrictModel):
    """Concept-conditional relevance: per-feature heatmaps for the channels of one layer."""

    layer: NonEmptyStr
    """Module name of the layer whose channels are the concepts (e.g. ``conv2``, ``layer4.1.conv2``)."""
    features: Annotated[
        int | list[int],
        BeforeValidator(_features),
        Field(description="top-n most relevant channels (an int) or explicit channel indices (a list)"),
    ]


class StorageSpec(StrictModel):
    """What is kept of each explanation."""

    dtype: Literal["float16", "float32"] = "float32"
    """Precision of the stored relevance maps (float16 halves the store)."""
    keep_input: Bool = True
    """Also store each model input beside its relevance map (for overlays and reports)."""
    layerwise: list[NonEmptyStr] = Field(default_factory=list)
    """Module names whose relevance is kept besides the input relevance (may be empty)."""
    crp: CRPSpec | None = None
    """Concept relevance (CRP): per-channel heatmaps of one layer's most relevant channels; none if omitted."""

    @field_validator("layerwise")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        repeated = sorted({name for name in value if value.count(name) > 1})
        if repeated:
            raise ValueError(f"layer names must not repeat: {', '.join(repeated)}")
        return value


# -- execution ------------------------------------------------------------------------------------


Workers = capped(PositiveInt, "ray.workers")
CpusPerWorker = capped(PositiveFloat, "ray.cpus_per_worker")
GpusPerWorker = capped(NonNegativeFloat, "ray.gpus_per_worker")
ShardSize = capped(PositiveInt, "shard_size")
BatchSize = capped(PositiveInt, "batch_size")
Retries = capped(NonNegativeInt, "retries")


class RaySpec(StrictModel):
    """Where shards run: ``address`` None starts a local Ray, otherwise e.g. ``ray://head:10001``."""

    address: NonEmptyStr | None = None
    """Ray cluster to join (``ray://head:10001``, or ``auto``); empty: a private local Ray (or $RAY_ADDRESS)."""
    workers: Workers = 1
    """Ray actors explaining shards in parallel, each loading the model once (fewer if the cluster has no room)."""
    cpus_per_worker: CpusPerWorker = 1.0
    """CPUs reserved per worker (also its torch threads)."""
    gpus_per_worker: GpusPerWorker = 0.0
    """GPUs per worker (0.5: two workers share one GPU); falls back to CPU with a warning on a cluster without GPUs."""
    shard_deadline_s: PositiveFloat | None = None
    """Longest one shard may run on a worker before it is retried on another and the worker replaced;
    empty: 10 x the median time of the shards this run has finished, at least 60 s (none before the first)."""


# -- the audit ------------------------------------------------------------------------------------

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class AuditConfig(StrictModel):
    """One audit: explain every sample of ``dataset`` with ``model`` and keep the results in ``output``."""

    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=100)]
    """Audit name: letters, digits, ``.``, ``_``, ``-`` (names the Prefect report artifact)."""
    output: NonEmptyStr
    """Directory or fsspec URL (``s3://bucket/audits/x``) that receives the Zarr + Parquet results."""
    model: ModelSpec
    """The classifier to explain: a builder function plus weights, or a torch.export program."""
    dataset: DatasetSpec
    """The samples to explain: scikit-learn digits, a .npy/.npz array, an image folder or a Zarr array."""
    preprocessing: Preprocessing = Preprocessing()
    """Resize/crop (image folders), scale, mean/std normalisation applied to every sample."""
    composite: CompositeSpec = EpsilonPlusFlatSpec(preset="EpsilonPlusFlat")
    """Which LRP rule each layer gets: a preset name, a preset with parameters, or an explicit rules list."""
    target: TargetSpec = PredictedTarget(kind="predicted")
    """Which output is explained: the predicted class, the true label, one fixed class, or the top k."""
    seed: Literal["one-hot", "logit"] = "one-hot"
    """Output relevance: 1 at the target class (``one-hot``) or the target's logit (``logit``)."""
    storage: StorageSpec = StorageSpec()
    """What is kept per sample besides the input relevance: precision, inputs, layerwise relevances, CRP."""
    shard_size: ShardSize = 256
    """Samples per shard: the unit of work, of commit and of resumption."""
    ray: RaySpec = RaySpec()
    """Where shards run: a private local Ray or a cluster, how many workers, CPUs/GPUs each."""
    retries: Retries = 2
    """Retries of a shard whose worker died before the audit fails naming it."""
    batch_size: BatchSize = 64
    """Samples per forward/backward pass inside a shard (memory vs speed)."""
    metrics: MetricsSpec = MetricsSpec()
    """Faithfulness metrics computed per sample and the model-randomisation sanity check (off unless asked)."""
    analysis: AnalysisSpec | None = Field(default=None, exclude_if=lambda v: v is None)  # left out when unset
    """Dataset-level analyses run after the last shard commits (SpRAy); not part of the shard digest."""

    @model_validator(mode="after")
    def _preprocessing_fits_dataset(self) -> AuditConfig:
        prep, data = self.preprocessing, self.dataset
        for key in ("resize", "crop"):
            if getattr(prep, key) is not None and not isinstance(data, ImageFolderSpec):
                raise invalid(
                    "preprocessing_mismatch",
                    f"{key} applies to image folders only, the dataset is {data.kind}",
                    field=f"preprocessing.{key}",
                )
        channels = _channels(data)
        for key in ("mean", "std"):
            values = getattr(prep, key)
            if values is not None and channels is not None and len(values) not in (1, channels):
                raise invalid(
                    "preprocessing_mismatch",
                    f"{key} has {len(values)} values but the dataset has {channels} channel(s)",
                    field=f"preprocessing.{key}",
                )
        return self


def _channels(data: Any) -> int | None:
    if isinstance(data, ImageFolderSpec):
        return data.channels
    if isinstance(data, DigitsSpec):
        return 1
    return None  # arrays: known only once the file is opened
