"""Train the small digits ResNet and write models/resnet_digits.safetensors and its audit data.

    .venv/bin/python scripts/train_resnet_digits.py [--epochs 12] [--out models/resnet_digits.safetensors]

The model is ``lrp_tasks.models.resnet:build_resnet`` with torchvision's structure (BasicBlocks,
BatchNorm, 1×1-conv shortcuts, global average pooling) at toy size: one block per stage
(``layers=[1, 1, 1, 1]``), width 8, the small 3×3 stem, one input channel, 10 classes. It is trained
on scikit-learn's digits upscaled to 1×32×32 (nearest neighbour, as in the planted dataset, but clean:
no stamps), on the stratified 80/20 training split of ``lrp_tasks.sources.digits``. The test split
(never trained on) is written as uint8 to data/digits32/digits32_test.npz (members ``x``, ``y``): the
samples conf/resnet_digits.yaml audits.

Deterministic (the shared loop of ``lrp_tasks.models.training``): fixed seeds, one thread,
deterministic algorithms, CPU. The test accuracy is printed and stored in the weights file's
metadata.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lrp_tasks.models.planted import upscale  # noqa: E402
from lrp_tasks.models.resnet import build_resnet  # noqa: E402
from lrp_tasks.models.training import TrainingSpec, accuracy, print_loss, save_weights, train_classifier  # noqa: E402
from lrp_tasks.sources.digits import digits_arrays, digits_split  # noqa: E402

BUILDER = "lrp_tasks.models.resnet:build_resnet"
ARCHITECTURE = {"layers": [1, 1, 1, 1], "num_classes": 10, "in_channels": 1, "width": 8, "stem": "small"}
DEFAULT_OUT = ROOT / "models" / "resnet_digits.safetensors"
DEFAULT_DATA = ROOT / "data" / "digits32" / "digits32_test.npz"


def split_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``(n, 1, 32, 32)`` images of a split (0..255; audits scale by 1/255) and int64 labels."""
    images, labels = digits_arrays()
    index = digits_split(split)
    x = np.round(upscale(images[index, 0]) * 255.0).astype(np.uint8)[:, None]
    return x, labels[index].astype(np.int64)


def as_input(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x.astype(np.float32) / 255.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--data-out", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()
    spec = TrainingSpec(epochs=args.epochs, batch_size=32, lr=1e-2)
    train_x, train_y = split_arrays("train")
    test_x, test_y = split_arrays("test")
    began = time.perf_counter()
    model = train_classifier(
        lambda: build_resnet(**ARCHITECTURE), as_input(train_x), torch.from_numpy(train_y), spec, on_epoch=print_loss
    )
    seconds = time.perf_counter() - began
    test_accuracy = accuracy(model, as_input(test_x), torch.from_numpy(test_y))
    train_accuracy = accuracy(model, as_input(train_x), torch.from_numpy(train_y))
    print(f"train accuracy {train_accuracy:.4f}  test accuracy {test_accuracy:.4f}  ({seconds:.1f} s training)")
    info = {
        "kwargs": ARCHITECTURE,
        "train_accuracy": round(train_accuracy, 4),
        "test_accuracy": round(test_accuracy, 4),
    }
    save_weights(model, args.out, builder=BUILDER, spec=spec, info=info)
    args.data_out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.data_out, x=test_x, y=test_y)
    print(f"wrote {args.out} and {args.data_out} ({len(test_y)} test images 1x32x32)")


if __name__ == "__main__":
    main()
