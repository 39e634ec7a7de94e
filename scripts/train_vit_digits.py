"""Train the tiny digits Vision Transformer and write models/vit_digits.safetensors.

    .venv/bin/python scripts/train_vit_digits.py [--epochs 40] [--out models/vit_digits.safetensors]

The model is ``lrp_tasks.models.vit:build_torchvision_vit`` with torchvision's ``VisionTransformer``
structure (patch convolution, class token, position embedding, pre-norm encoder blocks with
``nn.MultiheadAttention`` and a GELU MLP, final LayerNorm, linear head) at toy size: 32×32 input with
one channel, patches of 4 (64 tokens + the class token), 2 layers, 2 heads, hidden size 64, MLP 128.
It is trained on the same data as the digits ResNet (scripts/train_resnet_digits.py: scikit-learn's
digits upscaled to 1×32×32, the stratified 80/20 training split); conf/vit_digits.yaml audits the
360 test digits of data/digits32/digits32_test.npz, which that script writes.

Deterministic (the shared loop of ``lrp_tasks.models.training``): fixed seeds, one thread,
deterministic algorithms, CPU. The test accuracy is printed and stored in the weights' metadata.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from train_resnet_digits import as_input, split_arrays  # noqa: E402

from lrp_tasks.models.training import TrainingSpec, accuracy, print_loss, save_weights, train_classifier  # noqa: E402
from lrp_tasks.models.vit import build_torchvision_vit  # noqa: E402

BUILDER = "lrp_tasks.models.vit:build_torchvision_vit"
ARCHITECTURE = {
    "image_size": 32, "patch_size": 4, "num_layers": 2, "num_heads": 2, "hidden_dim": 64, "mlp_dim": 128,
    "num_classes": 10, "in_channels": 1,
}
DEFAULT_OUT = ROOT / "models" / "vit_digits.safetensors"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()
    spec = TrainingSpec(epochs=args.epochs, batch_size=32, lr=2e-3, weight_decay=0.05)
    train_x, train_y = split_arrays("train")
    test_x, test_y = split_arrays("test")
    began = time.perf_counter()
    model = train_classifier(
        lambda: build_torchvision_vit(**ARCHITECTURE), as_input(train_x), torch.from_numpy(train_y), spec,
        on_epoch=print_loss,
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
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
