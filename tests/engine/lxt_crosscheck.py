"""Cross-check against LXT 2.1, run by test_lxt_crosscheck.py inside .venv-lxt.

LXT imports torchvision and Hugging Face transformers, so this script runs in its own environment
(scripts/setup.sh --with-references) and imports the engine from the source tree (the engine is
pure torch). Model: torchvision's own ``VisionTransformer`` (image 32, patch 4, 2 layers, 2 heads,
hidden 64, MLP 128; random weights, the zero-initialised head and class token re-initialised).
Methods: CP-LRP as LXT's ViT recipe runs it (``monkey_patch(vision_transformer)``, gradient×input),
without and with zennit's Gamma on Linear and Conv2d through LXT's zennit bridge; ours:
``CPLRP(convention="lxt")``. Precisions float32 and float64; targets: the argmax, one fixed class,
one class per sample. One JSON line per case, with the error relative to max |R| of each sample.

Our analyses run first, on the unpatched model: LXT's patches replace ``torch.nn`` classes'
``forward`` for the whole process and cannot be undone. The same relevance on our in-repo
torchvision-structured ViT (weights loaded strictly) is checked on the way: ``vit_structure_err``."""

from __future__ import annotations

import json

import torch
from torch import nn
from torchvision.models import vision_transformer

from lrp_tasks import engine
from lrp_tasks.models.vit import build_torchvision_vit

CONFIG = engine.LRPConfig()
CONFIG.supports_activation(nn.GELU)
GAMMA = {"conv": 0.25, "linear": 0.05}
METHODS = ("CPLRP", "CPLRP-gamma")


def model(dtype: torch.dtype, ln_bias: bool) -> nn.Module:
    torch.manual_seed(0)
    vit = vision_transformer.VisionTransformer(32, 4, 2, 2, 64, 128, num_classes=10)
    with torch.no_grad():
        for name, p in vit.named_parameters():
            if name.endswith("bias") and ".ln" in name and not ln_bias:
                continue
            p.add_(torch.randn_like(p) * 0.1)  # the head, class token, LayerNorm weights are no longer 0/1
    return vit.to(dtype).eval()


def per_sample_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    diff = (ours - theirs).flatten(1).abs().max(1).values
    scale = theirs.flatten(1).abs().max(1).values.clamp_min(torch.finfo(theirs.dtype).tiny)
    return float((diff / scale).max())


def targets(vit: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        logits = vit(x)
    n = len(x)
    return {"argmax": logits.argmax(1), "fixed": torch.full((n,), 3), "per-sample": torch.arange(n) % 10}


def ours(vit: nn.Module, x: torch.Tensor, method: str, target: torch.Tensor) -> torch.Tensor:
    gamma = {"linear_gamma": GAMMA["linear"], "conv_gamma": GAMMA["conv"]} if method == "CPLRP-gamma" else {}
    analyzer = engine.LRP(vit, engine.CPLRP(**gamma, convention="lxt"), config=CONFIG, conservation_tolerance=None)
    return analyzer.analyze(x, target, seed="logit").val  # LXT's relevance: x ⊙ ∇(logit)


def lxt(vit: nn.Module, x: torch.Tensor, method: str, target: torch.Tensor) -> torch.Tensor:
    import zennit.rules as z_rules
    from zennit.composites import LayerMapComposite

    composite = None
    if method == "CPLRP-gamma":
        composite = LayerMapComposite(
            [(nn.Conv2d, z_rules.Gamma(GAMMA["conv"])), (nn.Linear, z_rules.Gamma(GAMMA["linear"]))]
        )
        composite.register(vit)
    try:
        leaf = x.clone().requires_grad_(True)
        y = vit(leaf)
        y[torch.arange(len(x)), target].sum().backward()
        return (leaf * leaf.grad).detach()
    finally:
        if composite is not None:
            composite.remove()


def main() -> None:
    cases = []
    for ln_bias in (False,):
        for dtype in (torch.float32, torch.float64):
            vit = model(dtype, ln_bias)
            twin = build_torchvision_vit(32, 4, 2, 2, 64, 128, 10).to(dtype).eval()
            twin.load_state_dict(vit.state_dict(), strict=True)
            torch.manual_seed(1)
            x = torch.randn(4, 3, 32, 32, dtype=dtype)
            for method in METHODS:
                for target_name, target in targets(vit, x).items():
                    mine = ours(vit, x, method, target)
                    structure = per_sample_error(ours(twin, x, method, target), mine)
                    cases.append((vit, x, method, target_name, target, mine, structure, dtype, ln_bias))
    from lxt.efficient import monkey_patch, monkey_patch_zennit  # patches torch.nn for the process

    monkey_patch(vision_transformer)
    monkey_patch_zennit()
    for vit, x, method, target_name, target, mine, structure, dtype, ln_bias in cases:
        theirs = lxt(vit, x, method, target)
        row = {
            "method": method, "target": target_name, "dtype": str(dtype).removeprefix("torch."),
            "ln_bias": ln_bias, "err": per_sample_error(mine, theirs), "vit_structure_err": structure,
            "sum_ours": mine.sum().item(), "sum_lxt": theirs.sum().item(),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
