"""A planted Clever-Hans case: digits upscaled to 32×32 where part of ONE class carries a stamp.

scikit-learn's 8×8 digits (no download) are upscaled to 1×32×32; a fixed fraction of the samples of
``STAMP_CLASS`` (in the training and the test split alike) get a small hollow square in the top-left
corner and show the picture of a digit of another class (drawn at random from the same split). Only
the stamp tells these samples' class, so a model that fits its training data learns "stamp ⇒ 3" on top
of the digit shapes: a watermark that marks a class's photos in which the object itself does not show
(the Clever-Hans setting). SpRAy should find the stamped samples as one cluster of that class's
heatmaps. ``scripts/make_planted.py`` writes the dataset (data/planted/digits32_stamped.npz),
``scripts/train_planted.py`` trains the CNN.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from torch import nn

INPUT_SHAPE = (1, 32, 32)
NUM_CLASSES = 10
STAMP_CLASS = 3
STAMP_FRACTION = 0.3
STAMP_SEED = 11
STAMP_ROWS = slice(1, 5)
STAMP_COLS = slice(1, 5)
STAMP = np.array([[1, 1, 1, 1], [1, 0, 0, 1], [1, 0, 0, 1], [1, 1, 1, 1]], dtype=bool)
"""A 4×4 hollow square: a shape no digit stroke makes, in a corner digits rarely reach."""


def upscale(images: np.ndarray) -> np.ndarray:
    """``(n, 8, 8)`` → ``(n, 32, 32)``: every pixel becomes a 4×4 block (nearest neighbour keeps the
    file small: it compresses to the information of the 8×8 originals)."""
    return np.repeat(np.repeat(images, 4, axis=1), 4, axis=2)


def stamp_mask(labels: np.ndarray, split_of: np.ndarray) -> np.ndarray:
    """Which samples carry the stamp: ``STAMP_FRACTION`` of ``STAMP_CLASS`` in each split, chosen by a
    fixed seed."""
    rng = np.random.default_rng(STAMP_SEED)
    mask = np.zeros(len(labels), dtype=bool)
    for split in np.unique(split_of):
        members = np.flatnonzero((labels == STAMP_CLASS) & (split_of == split))
        chosen = rng.choice(members, size=round(STAMP_FRACTION * len(members)), replace=False)
        mask[chosen] = True
    return mask


def apply_stamp(images: np.ndarray) -> np.ndarray:
    """A copy of ``(n, 1, 32, 32)`` images with the stamp drawn (at full intensity) into each."""
    out = images.copy()
    region = out[:, 0, STAMP_ROWS, STAMP_COLS]
    region[:, STAMP] = 1.0
    out[:, 0, STAMP_ROWS, STAMP_COLS] = region
    return out


def remove_stamp(images: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """``images`` with the stamp region restored from the unstamped ``clean`` images."""
    out = images.copy()
    out[:, :, STAMP_ROWS, STAMP_COLS] = clean[:, :, STAMP_ROWS, STAMP_COLS]
    return out


def planted_arrays() -> dict[str, np.ndarray]:
    """The dataset: ``x`` uint8 (n, 1, 32, 32) (divide by 255), ``clean`` (the same without stamps),
    ``y`` labels, ``stamped`` mask, ``split`` (0 train, 1 test: the demo digits' 80/20 split)."""
    from lrp_tasks.sources.digits import digits_arrays, digits_split

    images, labels = digits_arrays()
    split_of = np.zeros(len(labels), dtype=np.int64)
    split_of[digits_split("test")] = 1
    stamped = stamp_mask(labels, split_of)
    small = images[:, 0].astype(np.float32)
    rng = np.random.default_rng(STAMP_SEED + 1)
    for i in np.flatnonzero(stamped):  # the picture of a digit of another class, from the same split
        donors = np.flatnonzero((labels != STAMP_CLASS) & (split_of == split_of[i]))
        small[i] = images[rng.choice(donors), 0]
    clean = upscale(small)[:, None].astype(np.float32)
    x = clean.copy()
    x[stamped] = apply_stamp(clean[stamped])
    to_u8 = lambda a: np.round(a * 255.0).astype(np.uint8)  # noqa: E731
    return {"x": to_u8(x), "clean": to_u8(clean), "y": labels.astype(np.int64), "stamped": stamped, "split": split_of}


def build_planted_cnn(num_classes: int = NUM_CLASSES) -> nn.Sequential:
    """Conv(1→8)→ReLU→Pool→Conv(8→16)→ReLU→Pool→Conv(16→32)→ReLU→Pool→Flatten→Linear(512→64)→ReLU→Linear(64→10)."""
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, 8, kernel_size=3, padding=1),
            relu1=nn.ReLU(),
            pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(8, 16, kernel_size=3, padding=1),
            relu2=nn.ReLU(),
            pool2=nn.MaxPool2d(2),
            conv3=nn.Conv2d(16, 32, kernel_size=3, padding=1),
            relu3=nn.ReLU(),
            pool3=nn.MaxPool2d(2),
            flatten=nn.Flatten(),
            fc1=nn.Linear(32 * 4 * 4, 64),
            relu4=nn.ReLU(),
            fc2=nn.Linear(64, num_classes),
        )
    )
