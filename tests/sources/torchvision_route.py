"""Run in ``.venv-zennit`` (torch + a matching torchvision; the project's own environment has no
torchvision): docs/config.md's torchvision route, step by step as ``load_model`` takes it.

``builder: torchvision.models:resnet50`` is called without weights, a state dict saved from
another instance fills it strictly via ``torch.load(weights_only=True)``, and the engine explains
it. Prints one JSON line."""

from __future__ import annotations

import importlib
import json
import sys
import tempfile
from pathlib import Path

import torch


def main() -> None:
    torch.manual_seed(0)
    module_name, _, attr = "torchvision.models:resnet50".partition(":")
    builder = getattr(importlib.import_module(module_name), attr)
    saved = builder(num_classes=1000).eval()  # stands for torchvision's pretrained weights
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "resnet50.pt"
        torch.save(saved.state_dict(), path)
        model = builder(num_classes=1000)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    model.eval()

    from lrp_tasks.engine import LRP, EpsilonGammaBox, canonize, strip_softmax

    analyzer = LRP(canonize(strip_softmax(model)), EpsilonGammaBox(-3.0, 3.0))
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    expl = analyzer(x)
    print(
        json.dumps(
            {
                "torch": torch.__version__,
                "torchvision": sys.modules["torchvision"].__version__,
                "analyzer": type(analyzer).__name__,
                "shape": list(expl.val.shape),
                "finite": bool(torch.isfinite(expl.val).all()),
                "same_logits": bool(torch.allclose(expl.output, saved(x), atol=1e-4, rtol=1e-4)),
            }
        )
    )


if __name__ == "__main__":
    main()
