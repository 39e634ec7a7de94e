"""Cross-check against zennit 1.0, run by test_zennit_crosscheck.py inside .venv-zennit.

zennit imports torchvision, which cannot load beside the project's torch 2.13 CPU wheel, so this
script runs in its own environment (scripts/setup.sh --with-zennit) and imports the engine from
the source tree (the engine is pure torch). It prints one JSON line per preset."""

from __future__ import annotations

import json
import sys

import torch
from zennit import composites as zc
from zennit.attribution import Gradient
from zennit.canonizers import SequentialMergeBatchNorm

from lrp_tasks import engine
from tests.engine.models import seed_cnn


def main() -> None:
    torch.manual_seed(0)
    model = seed_cnn()
    x = torch.randn(8, 3, 32, 32)
    presets = {
        "EpsilonGammaBox": ({"low": -3.0, "high": 3.0}, {"low": -3.0, "high": 3.0}),
        "EpsilonPlus": ({}, {}),
        "EpsilonAlpha2Beta1": ({}, {}),
        "EpsilonPlusFlat": ({}, {}),
        "EpsilonAlpha2Beta1Flat": ({}, {}),
    }
    ours_model = engine.canonize(model)
    for name, (zkw, okw) in presets.items():
        target = model(x).argmax(1)
        composite = getattr(zc, name)(canonizers=[SequentialMergeBatchNorm()], **zkw)
        with Gradient(model=model, composite=composite) as attributor:
            _, theirs = attributor(x, torch.eye(100)[target])
        analyzer = engine.LRP(ours_model, engine.PRESETS[name](**okw, convention="zennit"))
        ours = analyzer(x, target).val
        err = (ours - theirs).abs().max().item() / theirs.abs().max().item()
        print(json.dumps({"preset": name, "max_abs_rel_err": err, "sum_ours": ours.sum().item(),
                          "sum_zennit": theirs.sum().item(), "torch": torch.__version__}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
