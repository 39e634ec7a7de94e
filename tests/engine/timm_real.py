"""timm's own VisionTransformer (the library's class: ``Attention`` calling
``F.scaled_dot_product_attention``, ``LayerNorm``, ``Mlp``), run in .venv-lxt where timm is installed
(LXT pulls it in) by test_vit.py, or by hand:

    PYTHONPATH=. .venv-lxt/bin/python tests/engine/timm_real.py

Random weights (image 32, patch 4, 2 blocks, 2 heads, width 64, MLP 128); the same weights loaded
strictly into the in-repo timm structure (``build_timm_vit``). One JSON line per composite: the worst
error between the two relevances relative to max |R| per sample (float64), and the logits' difference."""

from __future__ import annotations

import json

import timm
import torch

from lrp_tasks import engine
from lrp_tasks.models.vit import build_timm_vit


def main() -> None:
    torch.manual_seed(0)
    real = timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=2, mlp_ratio=2.0, num_classes=10,
        global_pool="token",
    ).double()
    with torch.no_grad():
        for p in real.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    real.eval()
    twin = build_timm_vit().double()
    twin.load_state_dict(real.state_dict(), strict=True)
    twin.eval()
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = float((real(x) - twin(x)).abs().max())
    for name in ("AttnLRP", "CPLRP", "EpsilonPlusFlat"):
        a = engine.LRP(real, getattr(engine, name)(), conservation_tolerance=None)(x).val
        b = engine.LRP(twin, getattr(engine, name)(), conservation_tolerance=None)(x).val
        scale = a.flatten(1).abs().max(1).values.clamp_min(1e-300)
        err = float(((a - b).flatten(1).abs().max(1).values / scale).max())
        print(json.dumps({"composite": name, "logits": logits, "err": err, "timm": timm.__version__}), flush=True)


if __name__ == "__main__":
    main()
