"""LRP cost against the cost of a gradient: forward, forward+backward (gradient×input), our LRP
(EpsilonPlusFlat on the canonized model) and zennit 1.0 when importable, measured in one run on
the same inputs and printed as ms and as ratios to forward+backward.

    .venv/bin/python benchmarks/engine.py                        # without zennit
    PYTHONPATH=. .venv-zennit/bin/python benchmarks/engine.py    # with zennit (own torch build)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lrp_tasks.engine import LRP, EpsilonPlusFlat, canonize
from tests.engine.models import randomize_batchnorm, seed_cnn
from tests.engine.resnets import resnet18_like


def vgg11_like(classes: int = 1000) -> nn.Sequential:
    """torchvision's vgg11_bn layout (features, 7×7 adaptive pooling, 3-layer classifier)."""
    layers: list[nn.Module] = []
    channels = 3
    for v in [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(channels, int(v), 3, padding=1), nn.BatchNorm2d(int(v)), nn.ReLU()]
            channels = int(v)
    model = nn.Sequential(
        nn.Sequential(*layers),
        nn.AdaptiveAvgPool2d((7, 7)),
        nn.Flatten(),
        nn.Sequential(
            nn.Linear(512 * 49, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(),
            nn.Linear(4096, classes),
        ),
    )
    randomize_batchnorm(model)
    return model.eval()


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median ms of each function, run round-robin so that a machine slowing down or speeding up
    during the run affects every column alike."""
    for fn in fns.values():
        fn()  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(v) * 1e3 for name, v in samples.items()}


def measure(name: str, model: nn.Module, x: torch.Tensor, repeats: int) -> None:
    model.eval()
    fused = canonize(model)
    analyzer = LRP(fused, EpsilonPlusFlat())  # a GraphLRP for non-sequential models

    def forward() -> object:
        with torch.no_grad():
            return model(x)

    def forward_backward() -> object:
        xg = x.clone().requires_grad_(True)
        out = model(xg)
        return torch.autograd.grad(out.max(1).values.sum(), xg)[0] * x

    fns: dict[str, Callable[[], object]] = {
        "forward": forward,
        "forward+backward": forward_backward,
        "lrp-audit LRP": lambda: analyzer(x),
    }
    rows = interleaved(fns, repeats)
    try:
        from zennit.attribution import Gradient
        from zennit.canonizers import SequentialMergeBatchNorm
        from zennit.composites import EpsilonPlusFlat as ZEpsilonPlusFlat
    except ImportError:
        pass
    else:
        # zennit's hooks stay on the model while its attributor is open: measure it in its own
        # round-robin (with its own forward+backward for the ratio)
        composite = ZEpsilonPlusFlat(canonizers=[SequentialMergeBatchNorm()])
        classes = model(x).shape[1]
        target = torch.eye(classes)[model(x).argmax(1)]
        with Gradient(model=model, composite=composite) as attributor:
            zen = interleaved({"zennit": lambda: attributor(x, target)}, repeats)["zennit"]
        again = interleaved({"fb": forward_backward}, repeats)["fb"]
        rows["zennit 1.0 LRP"] = zen * rows["forward+backward"] / again
    base = rows["forward+backward"]
    print(f"\n{name}: input {tuple(x.shape)}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for label, ms in rows.items():
        print(f"  {label:<18} {ms:9.2f} ms   {ms / base:5.2f}x forward+backward")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--only", choices=["seed", "vgg", "resnet"], default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.only in (None, "seed"):
        measure("seed CNN (batch 64)", seed_cnn(), torch.randn(64, 3, 32, 32), args.repeats)
    if args.only in (None, "vgg"):
        measure("VGG11-shaped (64x64, batch 8)", vgg11_like(), torch.randn(8, 3, 64, 64), args.repeats)
    if args.only in (None, "resnet"):
        measure("ResNet18-shaped (64x64, batch 8)", resnet18_like(), torch.randn(8, 3, 64, 64), args.repeats)


if __name__ == "__main__":
    main()
