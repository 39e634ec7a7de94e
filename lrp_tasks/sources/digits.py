"""scikit-learn's 8×8 digits: the demo dataset, shipped with scikit-learn (no download).

The train/test split is defined here once, so the training script, the accuracy test and the
``split`` option of a config all use the same samples.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from lrp_tasks.config.dataset_spec import DigitsSpec, Preprocessing

from .base import DatasetSource, fingerprint

SPLIT_SEED = 0
TEST_FRACTION = 0.2
JITTER_SEED = 20240611


@lru_cache(maxsize=1)
def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Images (1797, 1, 8, 8) float32 in [0, 1] (raw 0..16 divided by 16) and int64 labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (data.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    images.setflags(write=False)
    labels = data.target.astype(np.int64)
    labels.setflags(write=False)
    return images, labels


@lru_cache(maxsize=3)
def digits_split(split: str) -> np.ndarray:
    """Sorted indices into ``load_digits()`` of a split: stratified 80/20, fixed random_state."""
    _, labels = digits_arrays()
    everything = np.arange(len(labels), dtype=np.int64)
    if split == "all":
        return everything
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(everything, test_size=TEST_FRACTION, stratify=labels, random_state=SPLIT_SEED)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'all', 'train' or 'test', got {split!r}")
    chosen = np.sort(train if split == "train" else test)
    chosen.setflags(write=False)
    return chosen


class DigitsSource(DatasetSource):
    """Sample ``i`` is image ``base[i % n]`` of the split; copies ``i // n >= 1`` get Gaussian noise
    drawn from a generator seeded by ``i`` alone, so every shard reads identical values."""

    kind = "digits"

    def __init__(self, spec: DigitsSpec, preprocessing: Preprocessing | None = None) -> None:
        super().__init__(preprocessing)
        self.spec = spec
        self.base = digits_split(spec.split)
        self.sample_shape = (1, 8, 8)
        self.class_names = [str(d) for d in range(10)]
        desc = f"{spec.split}x{spec.repeat}" + (f",jitter={spec.jitter}" if spec.repeat > 1 else "")
        self.dataset_id = f"digits:{desc}@{fingerprint('digits', spec.model_dump(), self.preprocessing.model_dump())}"

    def __len__(self) -> int:
        return len(self.base) * self.spec.repeat

    def _all_labels(self) -> np.ndarray | None:
        return digits_arrays()[1][self.base]  # the copies of `repeat` repeat these labels

    def _read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        images, labels = digits_arrays()
        positions = np.arange(start, stop)
        original = self.base[positions % len(self.base)]
        copies = positions // len(self.base)
        x = images[original].copy()
        if self.spec.jitter > 0:
            for row, (i, copy) in enumerate(zip(positions, copies, strict=True)):
                if copy > 0:
                    rng = np.random.default_rng((JITTER_SEED, int(i)))
                    noise = rng.normal(0.0, self.spec.jitter, size=x.shape[1:]).astype(np.float32)
                    x[row] = np.clip(x[row] + noise, 0.0, 1.0)
        ids = [str(o) if c == 0 else f"{o}#{c}" for o, c in zip(original, copies, strict=True)]
        return x, labels[original], ids
