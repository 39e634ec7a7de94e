"""Which samples to explain and how they are turned into model inputs, as written in a config file.

Reading lives in ``lrp_tasks.sources``; this module only describes and validates.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from .base import Float, NonEmptyStr, NonNegativeFloat, PositiveFloat, PositiveInt, Size, StrictModel
from .limits import capped

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
IgnoreLabel = Annotated[int | None, Field(strict=True, exclude_if=lambda value: value is None)]
"""Left out of the config's JSON when not given, so configs written before it keep their digest."""


class DigitsSpec(StrictModel):
    """scikit-learn's 8×8 digits (1797 images, 1×8×8 in [0, 1]); the demo dataset.

    ``split`` picks the stratified 80/20 split the demo model was trained with; ``repeat`` tiles the
    split ``repeat`` times, copies after the first with Gaussian pixel noise of std ``jitter``
    seeded by the sample index (so any shard reads the same values), to scale benchmarks."""

    kind: Literal["digits"]
    split: Literal["all", "train", "test"] = "all"
    """``all`` 1797 images, or the stratified 80/20 ``train``/``test`` split the demo model was trained with."""
    repeat: capped(PositiveInt, "dataset.repeat") = 1
    """Tile the split this many times (benchmarks); copies after the first get pixel noise."""
    jitter: NonNegativeFloat = 0.05
    """Standard deviation of the Gaussian pixel noise of the repeated copies."""


class ArraySpec(StrictModel):
    """A ``.npy`` file (memory-mapped) or a member of a ``.npz`` archive, first axis = samples.

    Labels come from another member of the same ``.npz`` (``labels``) or a ``.npy`` file
    (``labels_path``); without either they are unknown (-1)."""

    kind: Literal["array"]
    path: NonEmptyStr
    """A .npy or .npz file (relative paths: to the config file's directory); first axis = samples."""
    array: NonEmptyStr | None = None
    """Member of a ``.npz``; may be left out when the archive holds exactly one array."""
    labels: NonEmptyStr | None = None
    """Member of the same .npz holding integer labels."""
    labels_path: NonEmptyStr | None = None
    """A .npy file of integer labels, one per sample."""
    ignore_label: IgnoreLabel = None
    """A label value that marks unlabelled samples (e.g. 255), stored as -1; any other label outside the
    model's classes is refused."""

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
    """Folder with one sub-folder of .png/.jpg/.jpeg images per class (relative: to the config file's directory)."""
    channels: Literal[1, 3] = 3
    """1: read images as grayscale; 3: as RGB."""
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
    """Zarr group: a local path (relative: to the config file's directory) or an fsspec URL."""
    array: NonEmptyStr
    """Array of the group holding the samples (first axis = samples)."""
    labels: NonEmptyStr | None = None
    """Another array of the same group holding integer labels."""
    ignore_label: IgnoreLabel = None
    """A label value that marks unlabelled samples (e.g. 255), stored as -1; any other label outside the
    model's classes is refused."""


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
    """Multiply every value (e.g. 1/255 for raw 0–255 arrays)."""
    mean: list[Float] | None = Field(default=None, min_length=1)
    """Subtracted per channel: one value, or one per channel."""
    std: list[PositiveFloat] | None = Field(default=None, min_length=1)
    """Divides per channel after the mean: one value, or one per channel (> 0)."""

    @model_validator(mode="after")
    def _same_channels(self) -> Preprocessing:
        if self.mean is not None and self.std is not None and len(self.mean) != len(self.std):
            raise ValueError(f"mean has {len(self.mean)} values but std has {len(self.std)}")
        return self
