"""Cross-check against zennit 1.0, run by test_zennit_crosscheck.py inside .venv-zennit.

zennit imports torchvision, which cannot load beside the project's torch 2.13 CPU wheel, so this
script runs in its own environment (scripts/setup.sh --with-references) and imports the engine from
the source tree (the engine is pure torch). Models: the seed CNN and torchvision ResNets
(BasicBlock and Bottleneck; zennit canonizes them with its ResNetCanonizer, we with ``canonize``).
Methods: the five presets in ``convention="zennit"`` and gradient×input. Precisions: float32 and
float64. Targets: the argmax, one fixed class, one class per sample. One JSON line per case, with
the error relative to max |R| of each sample (the worst sample)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from zennit import composites as zc
from zennit.attribution import Gradient
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.torchvision import ResNetCanonizer

from lrp_tasks import engine
from tests.engine.models import seed_cnn

PRESETS = ["EpsilonGammaBox", "EpsilonPlus", "EpsilonAlpha2Beta1", "EpsilonPlusFlat", "EpsilonAlpha2Beta1Flat"]
BOUNDS = {"low": -3.0, "high": 3.0}


def with_batchnorm_statistics(model: nn.Module, shape: tuple[int, ...], passes: int = 3) -> nn.Module:
    """Running statistics from a few train-mode passes on random data (random weights otherwise)."""
    model.train()
    with torch.no_grad():
        for _ in range(passes):
            model(torch.randn(8, *shape[1:]))
    return model.eval()


def resnet(block: type[nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    model = ResNet(block, [1, 1, 1, 1], num_classes=10)
    with torch.no_grad():  # non-trivial BatchNorm affine parameters, so fusion matters
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return with_batchnorm_statistics(model, (1, 3, 32, 32))


def per_sample_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """max over samples of max|ours − theirs| / max|theirs| (of that sample)."""
    diff = (ours - theirs).flatten(1).abs().max(1).values
    scale = theirs.flatten(1).abs().max(1).values.clamp_min(torch.finfo(theirs.dtype).tiny)
    return float((diff / scale).max())


def cases(model: nn.Module, canonizers: Callable[[], list], x: torch.Tensor, classes: int) -> list[dict[str, object]]:
    rows = []
    ours_model = engine.canonize(model)
    logits = model(x)
    targets = {
        "argmax": logits.argmax(1),
        "fixed": torch.full((x.shape[0],), 3, dtype=torch.long),
        "per-sample": torch.arange(x.shape[0]) % classes,
    }
    for name in [*PRESETS, "gradient×input"]:
        if name == "gradient×input":
            analyzer = engine.LRP(model, engine.Composite(default=engine.GradientRule()))
        else:
            kw = BOUNDS if name == "EpsilonGammaBox" else {}
            analyzer = engine.LRP(ours_model, engine.PRESETS[name](**kw, convention="zennit"))
        for target_name, target in targets.items():
            seed = torch.eye(classes, dtype=x.dtype)[target]
            if name == "gradient×input":
                with Gradient(model=model) as attributor:
                    _, grad = attributor(x, seed)
                theirs = grad * x
                ours = analyzer(x, target).val * x
            else:
                kw = BOUNDS if name == "EpsilonGammaBox" else {}
                composite = getattr(zc, name)(canonizers=canonizers(), **kw)
                with Gradient(model=model, composite=composite) as attributor:
                    _, theirs = attributor(x, seed)
                ours = analyzer(x, target).val
            rows.append(
                {
                    "method": name,
                    "target": target_name,
                    "err": per_sample_error(ours, theirs),
                    "sum_ours": ours.sum().item(),
                    "sum_zennit": theirs.sum().item(),
                }
            )
    return rows


def main() -> None:
    models: dict[str, tuple[Callable[[], nn.Module], Callable[[], list], tuple[int, ...], int]] = {
        "seed_cnn": (seed_cnn, lambda: [SequentialMergeBatchNorm()], (6, 3, 32, 32), 100),
        "resnet_basicblock": (lambda: resnet(BasicBlock), lambda: [ResNetCanonizer()], (4, 3, 32, 32), 10),
        "resnet_bottleneck": (lambda: resnet(Bottleneck), lambda: [ResNetCanonizer()], (4, 3, 32, 32), 10),
    }
    only = sys.argv[1:] or list(models)
    for dtype in (torch.float32, torch.float64):
        for model_name in only:
            build, canonizers, shape, classes = models[model_name]
            torch.manual_seed(0)
            model = build().to(dtype)
            x = torch.randn(*shape, dtype=dtype)
            for row in cases(model, canonizers, x, classes):
                row.update(model=model_name, dtype=str(dtype).removeprefix("torch."), torch=torch.__version__)
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
