"""The real torchvision classes of today's CNNs against the in-repo structures, run in .venv-zennit
(where torchvision 0.29 loads) by test_architectures_cnn.py, or by hand:

    PYTHONPATH=. .venv-zennit/bin/python tests/engine/torchvision_modern.py

For convnext_tiny, efficientnet_b0 and mobilenet_v3_small (random weights, BatchNorm statistics from
train-mode passes): the torchvision model's state dict loads strictly into the in-repo builder at the
original size, both give the same logits, and the engine explains both with EpsilonPlusFlat,
EpsilonAlpha2Beta1 (and AttnLRP on ConvNeXt) to the same relevance (float64). One JSON line per model
and composite: the worst error relative to max |R| per sample, and the relevance sum of the real class."""

from __future__ import annotations

import json

import torch
from torchvision import models as tvm

from lrp_tasks import engine
from lrp_tasks.models.convnext import build_convnext
from lrp_tasks.models.efficientnet import build_efficientnet_b0, build_mobilenet_v3_small

PAIRS = {
    "convnext_tiny": (tvm.convnext_tiny, lambda: build_convnext((3, 3, 9, 3), (96, 192, 384, 768), 1000)),
    "efficientnet_b0": (tvm.efficientnet_b0, lambda: build_efficientnet_b0(1000, width=1.0, depth=1.0)),
    "mobilenet_v3_small": (tvm.mobilenet_v3_small, lambda: build_mobilenet_v3_small(1000, width=1.0)),
}


COMPOSITES = {  # AttnLRP is for transformers: ε on every convolution of a deep BatchNorm CNN blows up
    "convnext_tiny": ("EpsilonPlusFlat", "EpsilonAlpha2Beta1", "AttnLRP"),
    "efficientnet_b0": ("EpsilonPlusFlat", "EpsilonAlpha2Beta1"),
    "mobilenet_v3_small": ("EpsilonPlusFlat", "EpsilonAlpha2Beta1"),
}


def main() -> None:
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for name, (real, ours) in PAIRS.items():
        torch.manual_seed(0)
        model = real(weights=None).double()
        model.train()
        with torch.no_grad():
            for _ in range(2):
                model(torch.randn(4, 3, 64, 64, dtype=torch.float64))
        model.eval()
        twin = ours().double()
        twin.load_state_dict(model.state_dict(), strict=True)
        twin.eval()
        with torch.no_grad():
            logits = float((model(x) - twin(x)).abs().max())
        for composite in COMPOSITES[name]:
            a = engine.LRP(model, getattr(engine, composite)(), conservation_tolerance=None)(x).val
            b = engine.LRP(twin, getattr(engine, composite)(), conservation_tolerance=None)(x).val
            scale = a.flatten(1).abs().max(1).values.clamp_min(1e-300)
            err = float(((a - b).flatten(1).abs().max(1).values / scale).max())
            row = {"model": name, "composite": composite, "logits": logits, "err": err,
                   "sum": a.flatten(1).sum(1).tolist()}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
