"""Image folders: PNGs written here with Pillow, read back as class-labelled float tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lrp_tasks.config import ImageFolderSpec, Preprocessing
from lrp_tasks.sources import DatasetError, ImageFolderSource


def make_folder(root: Path, size: tuple[int, int] = (6, 10)) -> dict[str, np.ndarray]:
    """cat/ with 2 images (one in a sub-folder), dog/ with 2, plus files that are not images."""
    rng = np.random.default_rng(1)
    pixels = {}
    for rel in ["dog/b.png", "cat/z.png", "cat/inner/a.png", "dog/a.jpg.png"]:
        rgb = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb, "RGB").save(root / rel)
        pixels[rel] = rgb
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "README.md").write_text("not a class")
    return pixels


def test_samples_are_sorted_by_class_then_path(tmp_path: Path) -> None:
    pixels = make_folder(tmp_path)
    source = ImageFolderSource(ImageFolderSpec(kind="imagefolder", path=str(tmp_path)))
    assert source.class_names == ["cat", "dog"]
    assert len(source) == 4 and source.sample_shape == (3, 6, 10)
    batch = source.read(0, 4)
    assert batch.ids == ["cat/inner/a.png", "cat/z.png", "dog/a.jpg.png", "dog/b.png"]
    np.testing.assert_array_equal(batch.labels, [0, 0, 1, 1])
    expected = np.stack([pixels[i].transpose(2, 0, 1) / 255.0 for i in batch.ids])
    np.testing.assert_allclose(batch.x.numpy(), expected, rtol=1e-6)


def test_grayscale_resize_and_shards(tmp_path: Path) -> None:
    make_folder(tmp_path)
    source = ImageFolderSource(  # a relative path, resolved against root
        ImageFolderSpec(kind="imagefolder", path=tmp_path.name, channels=1),
        Preprocessing(resize=(8, 8)),
        root=tmp_path.parent,
    )
    assert source.sample_shape == (1, 8, 8)
    whole = source.read(0, 4)
    halves = [source.read(0, 2), source.read(2, 4)]
    np.testing.assert_array_equal(np.concatenate([h.x.numpy() for h in halves]), whole.x.numpy())
    assert halves[0].ids + halves[1].ids == whole.ids
    assert 0.0 <= float(whole.x.min()) and float(whole.x.max()) <= 1.0


def test_resize_shorter_side_then_centre_crop_and_normalise(tmp_path: Path) -> None:
    make_folder(tmp_path, size=(20, 30))
    prep = Preprocessing(resize=10, crop=(8, 6), mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    source = ImageFolderSource(ImageFolderSpec(kind="imagefolder", path=str(tmp_path)), prep)
    batch = source.read(0, 2)
    assert batch.x.shape == (2, 3, 8, 6)
    assert float(batch.x.min()) >= -2.0 and float(batch.x.max()) <= 2.0


def test_class_order_from_config(tmp_path: Path) -> None:
    make_folder(tmp_path)
    source = ImageFolderSource(ImageFolderSpec(kind="imagefolder", path=str(tmp_path), classes=["dog"]))
    assert source.class_names == ["dog"] and len(source) == 2
    np.testing.assert_array_equal(source.read(0, 2).labels, [0, 0])
    with pytest.raises(DatasetError, match="has no class folder"):
        ImageFolderSource(ImageFolderSpec(kind="imagefolder", path=str(tmp_path), classes=["cow"]))


def test_images_of_different_sizes_need_a_resize(tmp_path: Path) -> None:
    make_folder(tmp_path)
    Image.new("RGB", (4, 4)).save(tmp_path / "dog" / "small.png")
    source = ImageFolderSource(ImageFolderSpec(kind="imagefolder", path=str(tmp_path)))
    with pytest.raises(DatasetError, match=r"image dog/small\.png gives shape \(3, 4, 4\), expected \(3, 6, 10\)"):
        source.read(0, len(source))


def test_unreadable_image_names_the_file(tmp_path: Path) -> None:
    make_folder(tmp_path)
    (tmp_path / "dog" / "broken.png").write_bytes(b"not a png")
    source = ImageFolderSource(ImageFolderSpec(kind="imagefolder", path=str(tmp_path)))
    with pytest.raises(DatasetError, match=r"cannot read image dog/broken\.png"):
        source.read(0, len(source))


def test_dataset_id_changes_when_files_change(tmp_path: Path) -> None:
    make_folder(tmp_path)
    spec = ImageFolderSpec(kind="imagefolder", path=str(tmp_path))
    before = ImageFolderSource(spec).dataset_id
    assert ImageFolderSource(spec).dataset_id == before
    Image.new("RGB", (10, 6)).save(tmp_path / "dog" / "c.png")
    assert ImageFolderSource(spec).dataset_id != before


def test_missing_or_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="image folder not found"):
        ImageFolderSource(ImageFolderSpec(kind="imagefolder", path=str(tmp_path / "none")))
    (tmp_path / "cat").mkdir()
    with pytest.raises(DatasetError, match=r"no \.png/\.jpg/\.jpeg images"):
        ImageFolderSource(ImageFolderSpec(kind="imagefolder", path=str(tmp_path)))
