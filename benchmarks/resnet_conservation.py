"""Per-sample input relevance sums of every preset on ResNets, for a one-hot seed of 1.

What the README's "ResNets" figures come from: the trained digits ResNet (32 test digits) and
torchvision-structured ResNet-18/50 (tests/engine/resnets.py, random weights, BatchNorm statistics
from three train-mode passes, 4 random 3×64×64 inputs), canonized, each preset in both conventions.
One line per model, convention and preset: min … max of Σ R_in over the samples (1 = conserved),
and the share of the gap (1 − Σ R_in) that bias terms absorbed (``LRP.conservation_breakdown``).

    PYTHONPATH=. .venv/bin/python benchmarks/resnet_conservation.py [digits resnet18 resnet50]
    PYTHONPATH=. .venv/bin/python benchmarks/resnet_conservation.py digits --conventions rpj
    PYTHONPATH=. .venv-zennit/bin/python benchmarks/resnet_conservation.py tv-resnet18 tv-resnet50
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lrp_tasks import engine  # noqa: E402
from lrp_tasks.models.resnet import build_resnet  # noqa: E402
from tests.engine.resnets import BasicBlock, Bottleneck, ResNet  # noqa: E402


def digits() -> tuple[nn.Module, Tensor, float, float]:
    """The committed digits ResNet (conf/resnet_digits.yaml) on its first 32 test digits."""
    from safetensors.torch import load_file  # not in the reference venvs, which run only torchvision's

    model = build_resnet([1, 1, 1, 1], num_classes=10, in_channels=1, width=8, stem="small")
    model.load_state_dict(load_file(str(ROOT / "models/resnet_digits.safetensors")))
    x = np.load(ROOT / "data/digits32/digits32_test.npz")["x"][:32]
    return model.eval(), torch.from_numpy(x).float().reshape(-1, 1, 32, 32) / 255, 0.0, 1.0


def torchvision_like(block: type, layers: list[int], size: int = 64) -> tuple[nn.Module, Tensor, float, float]:
    """Random weights, BatchNorm statistics from train-mode passes (as a freshly trained model has)."""
    torch.manual_seed(0)
    model = ResNet(block, layers, classes=10)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, size, size))
    return model.eval(), torch.randn(4, 3, size, size), -3.0, 3.0


def torchvision_model(name: str, size: int = 64) -> tuple[nn.Module, Tensor, float, float]:
    """torchvision's own ResNet (only where torchvision imports, e.g. .venv-zennit), set up as above."""
    from torchvision import models as tvm

    torch.manual_seed(0)
    model = getattr(tvm, name)(weights=None, num_classes=10)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, size, size))
    return model.eval(), torch.randn(4, 3, size, size), -3.0, 3.0


MODELS = {
    "digits": digits,
    "resnet18": lambda: torchvision_like(BasicBlock, [2, 2, 2, 2]),
    "resnet50": lambda: torchvision_like(Bottleneck, [3, 4, 6, 3]),
    "tv-resnet18": lambda: torchvision_model("resnet18"),
    "tv-resnet50": lambda: torchvision_model("resnet50"),
}
DEFAULT = ["digits", "resnet18", "resnet50"]


def sums(model: nn.Module, x: Tensor, composite: engine.Composite) -> tuple[Tensor, float]:
    """Σ R_in per sample for a one-hot seed, and the biases' share of the gap."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", engine.ConservationWarning)
        breakdown = engine.LRP(model, composite).conservation_breakdown(x)
    return 1.0 - (breakdown.biases + breakdown.other), breakdown.bias_share


def preset(name: str, low: float, high: float, convention: str) -> engine.Composite:
    if name == "EpsilonGammaBox":
        return engine.PRESETS[name](low, high, convention=convention)
    return engine.PRESETS[name](convention=convention)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=DEFAULT, help=f"any of {', '.join(MODELS)}")
    parser.add_argument("--conventions", default="rpj,zennit")
    args = parser.parse_args()
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    for name in args.models:
        model, x, low, high = MODELS[name]()
        model = engine.canonize(model)
        for convention in args.conventions.split(","):
            for p in engine.PRESETS:
                s, share = sums(model, x, preset(p, low, high, convention))
                print(
                    f"{name:<9} {convention:<7} {p:<23} {s.min().item():10.4g} … {s.max().item():<10.4g}"
                    f" biases absorb {share:.1%} of the gap",
                    flush=True,
                )


if __name__ == "__main__":
    main()
