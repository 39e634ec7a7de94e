"""LRP cost on today's architectures against the cost of a gradient: forward, forward+backward
(gradient×input) and our LRP, measured round-robin in one run on the same inputs and printed as ms
and as ratios to forward+backward (goal ≤ 1.5×), for a ViT-Ti/16-shaped torchvision ViT (AttnLRP)
and a ConvNeXt (EpsilonPlusFlat); then LXT 2.1's AttnLRP on the same ViT weights when LXT is
importable; then the peak memory of one explanation beside forward+backward's (and LXT's), each in a
fresh process.

    .venv/bin/python benchmarks/engine_modern.py                     # ours only
    PYTHONPATH=. .venv-lxt/bin/python benchmarks/engine_modern.py    # with LXT (its own torch build)

LXT patches ``torch.nn`` classes for the whole process and cannot be undone, so its times come after
ours, in their own round-robin, on torchvision's own ``VisionTransformer`` holding our ViT's weights;
its ratio uses the forward+backward measured before the patch (not interleaved with it: stated)."""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine import _status_kib, interleaved

from lrp_tasks.engine import LRP, AttnLRP, EpsilonPlusFlat, canonize
from lrp_tasks.models.convnext import build_convnext
from lrp_tasks.models.vit import build_torchvision_vit

VIT = {"image_size": 224, "patch_size": 16, "num_layers": 12, "num_heads": 3, "hidden_dim": 192, "mlp_dim": 768,
       "num_classes": 1000}
CASES: dict[str, tuple[str, Callable[[], nn.Module], tuple[int, ...], Callable[[], object]]] = {
    "vit": ("ViT-Ti/16-shaped (torchvision structure), AttnLRP", lambda: build_torchvision_vit(**VIT),
            (3, 224, 224), AttnLRP),
    "convnext": ("ConvNeXt (depths 2-2-6-2, dims 48-384), EpsilonPlusFlat",
                 lambda: build_convnext((2, 2, 6, 2), (48, 96, 192, 384), 1000), (3, 128, 128), EpsilonPlusFlat),
}


def _model(case: str) -> nn.Module:
    torch.manual_seed(0)
    model = CASES[case][1]()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)  # no zero class token / head
    return model.eval()


def _forward_backward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    xg = x.clone().requires_grad_(True)
    out = model(xg)
    return torch.autograd.grad(out.max(1).values.sum(), xg)[0] * x


def measure(case: str, batch: int, repeats: int) -> float:
    label, _, shape, composite = CASES[case]
    model = _model(case)
    x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(1))
    analyzer = LRP(canonize(model), composite(), conservation_tolerance=None)

    def forward() -> object:
        with torch.no_grad():
            return model(x)

    fns = {
        "forward": forward,
        "forward+backward": lambda: _forward_backward(model, x),
        "lrp-audit LRP": lambda: analyzer(x),
    }
    rows = interleaved(fns, repeats)
    base = rows["forward+backward"]
    print(f"\n{label}: input {tuple(x.shape)}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, ms in rows.items():
        print(f"  {name:<18} {ms:9.2f} ms   {ms / base:5.2f}x forward+backward")
    return base


def lxt_vit(batch: int, repeats: int, base: float) -> None:
    """LXT 2.1's AttnLRP (gradient×input of the patched model) on torchvision's class, our weights."""
    try:
        from lxt.efficient import monkey_patch
        from torchvision.models import vision_transformer
    except ImportError:
        print("  (LXT: not importable here; run in .venv-lxt)")
        return
    real = _lxt_model(vision_transformer)
    monkey_patch(vision_transformer)
    x = torch.randn(batch, *CASES["vit"][2], generator=torch.Generator().manual_seed(1))
    ms = interleaved({"lxt": lambda: _forward_backward(real, x)}, repeats)["lxt"]
    print(f"  {'LXT 2.1 AttnLRP':<18} {ms:9.2f} ms   {ms / base:5.2f}x forward+backward (measured after the patch)")


def _lxt_model(vision_transformer) -> nn.Module:
    real = vision_transformer.VisionTransformer(
        VIT["image_size"], VIT["patch_size"], VIT["num_layers"], VIT["num_heads"], VIT["hidden_dim"], VIT["mlp_dim"],
        num_classes=VIT["num_classes"],
    )
    real.load_state_dict(_model("vit").state_dict(), strict=True)
    return real.eval()


def _peak_child(case: str, method: str, batch: int, queue: multiprocessing.Queue) -> None:
    """One explanation in a fresh process: MiB of resident memory it added at its peak."""
    _, _, shape, composite = CASES[case]
    if method == "LXT 2.1 AttnLRP":
        from lxt.efficient import monkey_patch
        from torchvision.models import vision_transformer

        model = _lxt_model(vision_transformer)
        monkey_patch(vision_transformer)
    else:
        model = _model(case)
    x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(1))
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current resident set
    base = _status_kib("VmRSS")
    if method == "lrp-audit LRP":
        LRP(canonize(model), composite(), conservation_tolerance=None)(x)
    else:
        _forward_backward(model, x).sum()
    queue.put((_status_kib("VmHWM") - base) / 1024)


def peak_memory(case: str, batch: int, with_lxt: bool) -> None:
    if not os.path.exists("/proc/self/clear_refs"):
        print("  (peak memory: needs Linux /proc, skipped)")
        return
    methods = ["forward+backward", "lrp-audit LRP"] + (["LXT 2.1 AttnLRP"] if with_lxt else [])
    ctx = multiprocessing.get_context("spawn")
    peaks = {}
    for method in methods:
        queue = ctx.Queue()
        proc = ctx.Process(target=_peak_child, args=(case, method, batch, queue))
        proc.start()
        peaks[method] = queue.get()
        proc.join()
    print(f"  peak memory, batch {batch} (MiB above the built model):")
    for method, mib in peaks.items():
        print(f"    {method:<18} {mib:9.1f} MiB   {mib / peaks['forward+backward']:5.2f}x forward+backward")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--only", choices=list(CASES), default=None)
    parser.add_argument("--no-memory", action="store_true", help="timings only")
    args = parser.parse_args()
    try:
        import lxt  # noqa: F401
    except ImportError:
        with_lxt = False
    else:
        with_lxt = True
    for case in [args.only] if args.only else list(CASES):
        base = measure(case, args.batch, args.repeats)
        if not args.no_memory:
            peak_memory(case, args.batch, with_lxt and case == "vit")
        if case == "vit" and with_lxt:
            lxt_vit(args.batch, args.repeats, base)  # last: the patch stays for the process


if __name__ == "__main__":
    main()
