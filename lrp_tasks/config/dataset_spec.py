"""Which samples to explain and how they are turned into model inputs, as written in a config file.

Reading lives in ``lrp_tasks.sources``; this module only describes and validates.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from .base import Float, NonEmptyStr, NonNegativeFloat, PositiveFloat, PositiveInt, Size, StrictModel

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


class DigitsSpec(StrictModel):
    """scikit-learn's 8×8 digits (1797 images, 1×8×8 in [0, 1]); the demo dataset.

    ``split`` picks the stratified 80/20 split the demo model was trained with; ``repeat`` tiles the
    split ``repeat`` times, copies after the first with Gaussian pixel noise of std ``jitter``
    seeded by the sample index (so any shard reads the same values), to scale benchmarks."""

    kind: Literal["digits"]
    split: Literal["all", "train", "test"] = "all"
    repeat: PositiveInt = 1
    jitter: NonNegativeFloat = 0.05


class ArraySpec(StrictModel):
    """A ``.npy`` file (memory-mapped) or a member of a ``.npz`` archive, first axis = samples.

    Labels come from another member of the same ``.npz`` (``labels``) or a ``.npy`` file
    (``labels_path``); without either they are unknown (-1)."""

    kind: Literal["array"]
    path: NonEmptyStr
    array: NonEmptyStr | None = None
    """Member of a ``.npz``; may be left out when the archive holds exactly one array."""
    labels: NonEmptyStr | None = None
    labels_path: NonEmptyStr | None = None

    @field_validator("path")
    @classmethod
    def _format(cls, value: str) -> str:
        if PurePath(value).suffix.lower() not in (".npy", ".npz"):
            raise ValueError(f"path must be a .npy or .npz file, got {value!r}")
        return value

    @field_validator("labels_path")
    @classmethod
    def _labels_format(cls, value: str | None) -> str | None:
        if value is not None and PurePath(value).suffix.lower() != ".npy":
            raise ValueError(f"labels_path must be a .npy file, got {value!r}")
        return value

    @model_validator(mode="after")
    def _members_need_npz(self) -> ArraySpec:
        is_npz = PurePath(self.path).suffix.lower() == ".npz"
        if not is_npz and (self.array is not None or self.labels is not None):
            raise ValueError("'array' and 'labels' name members of a .npz archive; for a .npy use labels_path")
        if self.labels is not None and self.labels_path is not None:
            raise ValueError("give labels (a .npz member) or labels_path (a .npy file), not both")
        return self


class ImageFolderSpec(StrictModel):
    """One sub-folder per class (classes sorted by name, or in the order of ``classes``), PNG or
    JPEG images found recursively; a sample's id is its path relative to ``path``."""

    kind: Literal["imagefolder"]
    path: NonEmptyStr
    channels: Literal[1, 3] = 3
    classes: list[NonEmptyStr] | None = Field(default=None, min_length=1)
    """Class folders in label order; default: every sub-folder, sorted."""

    @field_validator("channels", mode="before")
    @classmethod
    def _int_channels(cls, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"channels is the integer 1 (grayscale) or 3 (RGB), got {value!r}")
        return value

    @field_validator("classes")
    @classmethod
    def _unique(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("classes must not repeat")
        return value


class ZarrSpec(StrictModel):
    """An array of an existing Zarr group (local path or fsspec URL), first axis = samples."""

    kind: Literal["zarr"]
    path: NonEmptyStr
    array: NonEmptyStr
    labels: NonEmptyStr | None = None
    """Another array of the same group holding integer labels."""


DatasetSpec = Annotated[DigitsSpec | ArraySpec | ImageFolderSpec | ZarrSpec, Field(discriminator="kind")]


class Preprocessing(StrictModel):
    """Applied to every sample, in this order: resize and centre-crop (image folders only), then
    ``x * scale``, then ``(x - mean) / std`` per channel (the first sample axis).

    Image folders are read as floats in [0, 1] and digits are divided by 16 before these steps."""

    resize: Size | None = None
    """An int resizes the shorter side keeping the aspect ratio; ``[height, width]`` resizes exactly."""
    crop: Size | None = None
    """Centre crop to ``[height, width]`` (an int: a square) after resizing."""
    scale: PositiveFloat | None = None
    mean: list[Float] | None = Field(default=None, min_length=1)
    std: list[PositiveFloat] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _same_channels(self) -> Preprocessing:
        if self.mean is not None and self.std is not None and len(self.mean) != len(self.std):
            raise ValueError(f"mean has {len(self.mean)} values but std has {len(self.std)}")
        return self
