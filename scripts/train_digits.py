"""Train the demo digits CNN and write models/digits_cnn.safetensors.

    .venv/bin/python scripts/train_digits.py [--out models/digits_cnn.safetensors] [--epochs 40]

Deterministic: fixed seeds, single-threaded, the stratified 80/20 split of
``lrp_tasks.sources.digits`` (the test split is never trained on). Takes seconds on a CPU and
prints the test accuracy, which docs/config.md records.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lrp_tasks.models.digits import build_digits_cnn  # noqa: E402
from lrp_tasks.sources.digits import digits_arrays, digits_split  # noqa: E402

SEED = 0


def split_tensors(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = digits_arrays()
    index = digits_split(split)
    return torch.from_numpy(images[index].copy()), torch.from_numpy(labels[index].copy())


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return (model(x).argmax(dim=1) == y).float().mean().item()


def train(epochs: int, batch_size: int = 32, lr: float = 3e-3) -> tuple[nn.Module, float]:
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    x_train, y_train = split_tensors("train")
    x_test, y_test = split_tensors("test")
    model = build_digits_cnn()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * -(-len(x_train) // batch_size)
    )
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(SEED)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(x_train[batch]), y_train[batch])
            loss.backward()
            optimizer.step()
            schedule.step()
        if (epoch + 1) % 10 == 0:
            test_accuracy = accuracy(model, x_test, y_test)
            print(f"epoch {epoch + 1:3d}  loss {loss.item():.4f}  test accuracy {test_accuracy:.4f}")
    return model.eval(), accuracy(model, x_test, y_test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "models" / "digits_cnn.safetensors")
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()
    model, test_accuracy = train(args.epochs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    info = {
        "builder": "lrp_tasks.models.digits:build_digits_cnn",
        "test_accuracy": round(test_accuracy, 4),
        "epochs": args.epochs,
        "seed": SEED,
        "torch": torch.__version__,
    }
    # one metadata entry: safetensors writes several in random order, and the file's sha256 is
    # the model's fingerprint in audit results, so a retrain with the same torch must give the same bytes
    save_file(state, str(args.out), metadata={"lrp_audit": json.dumps(info, sort_keys=True)})
    print(f"test accuracy {test_accuracy:.4f} on {len(digits_split('test'))} images; wrote {args.out}")


if __name__ == "__main__":
    main()
