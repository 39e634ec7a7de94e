"""Train the small digits ResNet and write models/resnet_digits.safetensors and its audit data.

    .venv/bin/python scripts/train_resnet_digits.py [--epochs 12] [--out models/resnet_digits.safetensors]

The model is ``lrp_tasks.models.resnet:build_resnet`` with torchvision's structure (BasicBlocks,
BatchNorm, 1×1-conv shortcuts, global average pooling) at toy size: one block per stage
(``layers=[1, 1, 1, 1]``), width 8, the small 3×3 stem, one input channel, 10 classes. It is trained
on scikit-learn's digits upscaled to 1×32×32 (nearest neighbour, as in the planted dataset, but clean:
no stamps), on the stratified 80/20 training split of ``lrp_tasks.sources.digits``. The test split
(never trained on) is written as uint8 to data/digits32/digits32_test.npz (members ``x``, ``y``): the
samples conf/resnet_digits.yaml audits.

Deterministic: fixed seeds, one thread, deterministic algorithms, CPU. The test accuracy is printed
and stored in the weights file's metadata.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lrp_tasks.models.planted import upscale  # noqa: E402
from lrp_tasks.models.resnet import build_resnet  # noqa: E402
from lrp_tasks.sources.digits import digits_arrays, digits_split  # noqa: E402

SEED = 0
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


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return (model(x).argmax(dim=1) == y).float().mean().item()


def train(x: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int = 32, lr: float = 1e-2) -> nn.Module:
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    model = build_resnet(**ARCHITECTURE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * -(-len(x) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(SEED)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            schedule.step()
        print(f"epoch {epoch + 1:3d}  loss {loss.item():.4f}")
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--data-out", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()
    train_x, train_y = split_arrays("train")
    test_x, test_y = split_arrays("test")
    began = time.perf_counter()
    model = train(as_input(train_x), torch.from_numpy(train_y), args.epochs)
    seconds = time.perf_counter() - began
    test_accuracy = accuracy(model, as_input(test_x), torch.from_numpy(test_y))
    train_accuracy = accuracy(model, as_input(train_x), torch.from_numpy(train_y))
    print(f"train accuracy {train_accuracy:.4f}  test accuracy {test_accuracy:.4f}  ({seconds:.1f} s training)")
    info = {
        "builder": "lrp_tasks.models.resnet:build_resnet",
        "kwargs": ARCHITECTURE,
        "epochs": args.epochs,
        "seed": SEED,
        "torch": torch.__version__,
        "train_accuracy": round(train_accuracy, 4),
        "test_accuracy": round(test_accuracy, 4),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(args.out), metadata={"lrp_audit": json.dumps(info, sort_keys=True)})
    args.data_out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.data_out, x=test_x, y=test_y)
    print(f"wrote {args.out} and {args.data_out} ({len(test_y)} test images 1x32x32)")


if __name__ == "__main__":
    main()
