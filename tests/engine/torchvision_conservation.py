"""Conservation of the default composites on torchvision architectures, run in .venv-zennit (where
torchvision loads) by test_torchvision_conservation.py, or by hand:

    PYTHONPATH=. .venv-zennit/bin/python tests/engine/torchvision_conservation.py [model ...]

Random weights, BatchNorm statistics from a few train-mode passes, canonized. For each model,
composite (EpsilonPlusFlat in both conventions, the default audit composite, and with bias-free
rules) and sample, the input
relevance is compared with the explained logit (seed="logit"): one JSON line per model and
composite with the worst relative gap |Σ R_in − logit| / |logit| over the samples."""

from __future__ import annotations

import json
import sys
import warnings

import torch
from torch import nn
from torchvision import models as tvm

from lrp_tasks import engine

MODELS = {
    "resnet18": tvm.resnet18,
    "resnet50": tvm.resnet50,
    "vgg16": tvm.vgg16,
    "densenet121": tvm.densenet121,
    "mobilenet_v2": tvm.mobilenet_v2,
}
SIZE = {"vgg16": 64}  # VGG's 7×7 adaptive pooling and 4096-wide classifier: 64×64 keeps it quick


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = MODELS[name](weights=None, num_classes=10)
    size = SIZE.get(name, 64)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, size, size))
    return model.eval()


def zero_bias() -> engine.Composite:
    """EpsilonPlusFlat with bias-free rules: what is lost with biases kept is the biases' share."""
    conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    passed = (nn.ReLU, nn.ReLU6, nn.BatchNorm2d, nn.Dropout, nn.Flatten, nn.Identity)
    return engine.Composite(
        engine.GlobalTypeMap(
            {
                conv: engine.ZPlusRule(zero_bias=True),
                nn.Linear: engine.EpsilonRule(1e-6, zero_bias=True),
                passed: engine.PassRule(),
            }
        ),
        engine.FirstLayerTypeMap({conv: engine.FlatRule()}),
    )


def main() -> None:
    names = sys.argv[1:] or list(MODELS)
    for name in names:
        model = build(name)
        fused = engine.canonize(model)
        size = SIZE.get(name, 64)
        x = torch.randn(4, 3, size, size)
        for convention in ("rpj", "zennit", "zero_bias"):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                composite = zero_bias() if convention == "zero_bias" else engine.EpsilonPlusFlat(convention=convention)
                analyzer = engine.LRP(fused, composite)
                expl = analyzer(x, seed="logit")
            logit = expl.output.gather(1, expl.output_selection[:, None])[:, 0]
            gap = ((expl.relevance_sum() - logit).abs() / logit.abs()).tolist()
            row = {
                "model": name,
                "convention": convention,
                "worst_gap": max(gap),
                "gaps": [round(g, 5) for g in gap],
                "warned": [str(w.message)[:160] for w in caught],
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
