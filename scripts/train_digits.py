"""Train the demo digits CNN and write models/digits_cnn.safetensors.

    .venv/bin/python scripts/train_digits.py [--out models/digits_cnn.safetensors] [--epochs 40]

Deterministic (the shared loop of ``lrp_tasks.models.training``: fixed seeds, single-threaded,
deterministic algorithms), on the stratified 80/20 split of ``lrp_tasks.sources.digits`` (the test
split is never trained on). Takes seconds on a CPU and prints the test accuracy, which
docs/config.md records.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lrp_tasks.models.digits import build_digits_cnn  # noqa: E402
from lrp_tasks.models.training import TrainingSpec, accuracy, save_weights, train_classifier  # noqa: E402
from lrp_tasks.sources.digits import digits_arrays, digits_split  # noqa: E402

BUILDER = "lrp_tasks.models.digits:build_digits_cnn"


def split_tensors(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = digits_arrays()
    index = digits_split(split)
    return torch.from_numpy(images[index].copy()), torch.from_numpy(labels[index].copy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "models" / "digits_cnn.safetensors")
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()
    spec = TrainingSpec(epochs=args.epochs, batch_size=32, lr=3e-3)
    x_train, y_train = split_tensors("train")
    x_test, y_test = split_tensors("test")

    def every_tenth(epoch: int, model, loss: float) -> None:
        if epoch % 10 == 0:
            test_accuracy = accuracy(model, x_test, y_test)
            print(f"epoch {epoch:3d}  loss {loss:.4f}  test accuracy {test_accuracy:.4f}")

    model = train_classifier(build_digits_cnn, x_train, y_train, spec, on_epoch=every_tenth)
    test_accuracy = accuracy(model, x_test, y_test)
    save_weights(model, args.out, builder=BUILDER, spec=spec, info={"test_accuracy": round(test_accuracy, 4)})
    print(f"test accuracy {test_accuracy:.4f} on {len(digits_split('test'))} images; wrote {args.out}")


if __name__ == "__main__":
    main()
