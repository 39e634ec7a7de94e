"""Samples from a folder of images, one sub-folder per class (torchvision's ImageFolder layout).

The file list is built once when the source is opened (paths only, sorted, so every run and every
worker sees the same order); pixels are read per shard with Pillow.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from lrp_tasks.config.dataset_spec import IMAGE_EXTENSIONS, ImageFolderSpec, Preprocessing
from lrp_tasks.config.io import resolve_path

from .base import DatasetSource, fingerprint
from .errors import DatasetError


def resized_size(size: tuple[int, int], resize: int | tuple[int, int] | None) -> tuple[int, int]:
    """(height, width) after ``resize``: an int sets the shorter side (torchvision's rule)."""
    height, width = size
    if resize is None:
        return height, width
    if isinstance(resize, int):
        if height <= width:
            return resize, int(resize * width / height)
        return int(resize * height / width), resize
    return resize


def transform(
    image: Image.Image, resize: int | tuple[int, int] | None, crop: int | tuple[int, int] | None
) -> Image.Image:
    """Resize (bilinear, antialiased) then centre-crop, as torchvision's Resize + CenterCrop."""
    height, width = resized_size((image.height, image.width), resize)
    if (height, width) != (image.height, image.width):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    if crop is not None:
        crop_h, crop_w = (crop, crop) if isinstance(crop, int) else crop
        if crop_h > height or crop_w > width:
            raise ValueError(f"crop {crop_h}x{crop_w} is larger than the resized image {height}x{width}")
        top = round((height - crop_h) / 2.0)
        left = round((width - crop_w) / 2.0)
        image = image.crop((left, top, left + crop_w, top + crop_h))
    return image


class ImageFolderSource(DatasetSource):
    """Sample ``i`` is the ``i``-th image in (class order, relative path) order; its id is the path
    relative to the folder (``cat/001.png``) and its label the class position."""

    kind = "imagefolder"

    def __init__(
        self,
        spec: ImageFolderSpec,
        preprocessing: Preprocessing | None = None,
        root: str | Path | None = None,
    ) -> None:
        super().__init__(preprocessing)
        self.spec = spec
        self.folder = resolve_path(spec.path, root)
        if not self.folder.is_dir():
            raise DatasetError(f"image folder not found: {spec.path} (resolved to {self.folder.absolute()})")
        self.class_names = self._classes()
        self.files: list[str] = []
        labels: list[int] = []
        for label, name in enumerate(self.class_names):
            found = sorted(
                p.relative_to(self.folder).as_posix()
                for p in (self.folder / name).rglob("*")
                if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
            )
            self.files += found
            labels += [label] * len(found)
        if not self.files:
            raise DatasetError(f"no {'/'.join(IMAGE_EXTENSIONS)} images under {spec.path}")
        self.labels = np.asarray(labels, dtype=np.int64)
        self.mode = "L" if spec.channels == 1 else "RGB"
        self.sample_shape = (spec.channels, *self._image_size())
        listing = hashlib.sha256()
        for rel in self.files:
            listing.update(f"{rel}|{(self.folder / rel).stat().st_size}\n".encode())
        self.dataset_id = "imagefolder:{}@{}".format(
            self.folder.name,
            fingerprint(
                "imagefolder",
                spec.model_dump(exclude={"path"}),
                listing.hexdigest(),
                self.preprocessing.model_dump(),
            ),
        )

    def _all_labels(self) -> np.ndarray | None:
        return self.labels

    def _classes(self) -> list[str]:
        present = sorted(p.name for p in self.folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        if self.spec.classes is None:
            if not present:
                raise DatasetError(f"{self.spec.path} has no class sub-folders")
            return present
        missing = [c for c in self.spec.classes if c not in present]
        if missing:
            raise DatasetError(f"{self.spec.path} has no class folder(s) {', '.join(missing)}")
        return list(self.spec.classes)

    def _image_size(self) -> tuple[int, int]:
        """(height, width) of every sample: from resize/crop, or from the first image."""
        prep = self.preprocessing
        if prep.crop is not None:
            return (prep.crop, prep.crop) if isinstance(prep.crop, int) else prep.crop
        if isinstance(prep.resize, tuple):
            return prep.resize
        with self._open(self.files[0]) as image:
            return resized_size((image.height, image.width), prep.resize)

    def _open(self, rel: str) -> Image.Image:
        try:
            return Image.open(self.folder / rel)
        except (UnidentifiedImageError, OSError) as exc:
            raise DatasetError(f"cannot read image {rel} in {self.spec.path}: {exc}") from exc

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, rel: str) -> np.ndarray:
        with self._open(rel) as image:
            try:
                image = transform(image.convert(self.mode), self.preprocessing.resize, self.preprocessing.crop)
            except (ValueError, OSError) as exc:
                raise DatasetError(f"cannot read image {rel} in {self.spec.path}: {exc}") from exc
            pixels = np.asarray(image, dtype=np.float32) / 255.0
        pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
        if pixels.shape != self.sample_shape:
            raise DatasetError(
                f"image {rel} gives shape {pixels.shape}, expected {self.sample_shape} like the others; "
                "set preprocessing.resize to [height, width] (or add crop) so all images match"
            )
        return pixels

    def _read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        rels = self.files[start:stop]
        return np.stack([self._load(rel) for rel in rels]), self.labels[start:stop], rels
