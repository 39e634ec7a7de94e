"""Train the planted-artifact CNN and write models/planted_cnn.safetensors; measure its use of the stamp.

    .venv/bin/python scripts/train_planted.py [--data data/planted/digits32_stamped.npz] [--epochs 15]

Deterministic (the shared loop of ``lrp_tasks.models.training``: fixed seeds, one thread,
deterministic algorithms), CPU, well under two minutes.
Trains on the training split of the planted dataset (scripts/make_planted.py), then measures on
the test split how much the model relies on the stamp:

* stamped test 3s: probability of class 3 with the stamp and with the stamp region restored from the
  clean image (and how many predictions change);
* test images of other classes with the stamp added: how many are then predicted as 3.

The numbers are printed and stored in the weights file's metadata (docs/spray.md quotes them).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lrp_tasks.models.planted import STAMP_CLASS, apply_stamp, build_planted_cnn, remove_stamp  # noqa: E402
from lrp_tasks.models.training import TrainingSpec, print_loss, save_weights, train_classifier  # noqa: E402

BUILDER = "lrp_tasks.models.planted:build_planted_cnn"
DEFAULT_DATA = ROOT / "data" / "planted" / "digits32_stamped.npz"
DEFAULT_OUT = ROOT / "models" / "planted_cnn.safetensors"


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def as_input(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.astype(np.float32) / 255.0)


@torch.no_grad()
def probabilities(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    model.eval()
    return torch.softmax(model(x), dim=1).numpy()


def stamp_reliance(model: nn.Module, data: dict[str, np.ndarray]) -> dict[str, float]:
    """How the model's output on the test split depends on the stamp."""
    test = data["split"] == 1
    x, clean, y, stamped = data["x"][test], data["clean"][test], data["y"][test], data["stamped"][test]
    p = probabilities(model, as_input(x))
    accuracy = float((p.argmax(1) == y).mean())
    with_stamp = p[stamped]
    without = probabilities(model, as_input(remove_stamp(x[stamped], clean[stamped])))
    others = (y != STAMP_CLASS) & ~stamped
    added = probabilities(model, as_input(apply_stamp(clean[others].astype(np.float32) / 255.0) * 255.0))
    return {
        "test_accuracy": round(accuracy, 4),
        "stamped_test_samples": int(stamped.sum()),
        "stamped_p3_with_stamp": round(float(with_stamp[:, STAMP_CLASS].mean()), 4),
        "stamped_p3_stamp_removed": round(float(without[:, STAMP_CLASS].mean()), 4),
        "stamped_prediction_changes_when_removed": int((with_stamp.argmax(1) != without.argmax(1)).sum()),
        "other_class_test_samples": int(others.sum()),
        "other_predicted_3_clean": int((p[others].argmax(1) == STAMP_CLASS).sum()),
        "other_predicted_3_with_stamp_added": int((added.argmax(1) == STAMP_CLASS).sum()),
        "other_mean_p3_with_stamp_added": round(float(added[:, STAMP_CLASS].mean()), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    data = load(args.data)
    spec = TrainingSpec(epochs=args.epochs, batch_size=32, lr=3e-3)
    train_rows = data["split"] == 0
    x, y = as_input(data["x"][train_rows]), torch.from_numpy(data["y"][train_rows])
    model = train_classifier(build_planted_cnn, x, y, spec, on_epoch=print_loss)
    reliance = stamp_reliance(model, data)
    print(json.dumps(reliance, indent=2))
    save_weights(model, args.out, builder=BUILDER, spec=spec, info=reliance)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
