"""LRP cost against the cost of a gradient: forward, forward+backward (gradient×input), our LRP
(EpsilonPlusFlat on the canonized model) and zennit 1.0 when importable, measured in one run on
the same inputs and printed as ms and as ratios to forward+backward; then the peak memory of one
explanation through the README's route (``LRP(canonize(model), ...)``) beside zennit's (its
canonizers, its attributor) and forward+backward's, each in a fresh process (Linux: the peak
resident set above the state after building the model, reset through /proc/self/clear_refs).

    .venv/bin/python benchmarks/engine.py                        # without zennit
    PYTHONPATH=. .venv-zennit/bin/python benchmarks/engine.py    # with zennit (own torch build)
    ... benchmarks/engine.py --only vgg --memory-batch 32        # the memory case of issue 14
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
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
    # a plan over the torch.fx graph for non-sequential models; conservation is not what is measured
    analyzer = LRP(fused, EpsilonPlusFlat(), conservation_tolerance=None)

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


CASES: dict[str, tuple[str, Callable[[], nn.Module], tuple[int, ...]]] = {
    "seed": ("seed CNN", seed_cnn, (3, 32, 32)),
    "vgg": ("VGG11-shaped", vgg11_like, (3, 64, 64)),
    "resnet": ("ResNet18-shaped", resnet18_like, (3, 64, 64)),
}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def _peak_child(case: str, method: str, batch: int, queue: multiprocessing.Queue) -> None:
    """One explanation in a fresh process: MiB of resident memory it added at its peak."""
    torch.manual_seed(0)
    _, build, shape = CASES[case]
    model = build().eval()
    x = torch.randn(batch, *shape)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current resident set
    base = _status_kib("VmRSS")
    if method == "forward+backward":
        xg = x.clone().requires_grad_(True)
        out = model(xg)
        (torch.autograd.grad(out.max(1).values.sum(), xg)[0] * x).sum()
    elif method == "lrp-audit LRP":
        LRP(canonize(model), EpsilonPlusFlat(), conservation_tolerance=None)(x)
    else:
        from zennit.attribution import Gradient
        from zennit.canonizers import SequentialMergeBatchNorm
        from zennit.composites import EpsilonPlusFlat as ZEpsilonPlusFlat

        composite = ZEpsilonPlusFlat(canonizers=[SequentialMergeBatchNorm()])
        with Gradient(model=model, composite=composite) as attributor:
            out = model(x)
            attributor(x, torch.eye(out.shape[1])[out.argmax(1)])
    queue.put((_status_kib("VmHWM") - base) / 1024)


def peak_memory(case: str, batch: int) -> None:
    """Peak MiB of each method, each in its own spawned process (one at a time)."""
    if not os.path.exists("/proc/self/clear_refs"):
        print("  (peak memory: needs Linux /proc, skipped)")
        return
    methods = ["forward+backward", "lrp-audit LRP"]
    try:
        import zennit  # noqa: F401
    except ImportError:
        pass
    else:
        methods.append("zennit 1.0 LRP")
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
        extra = f"   {mib / peaks['zennit 1.0 LRP']:5.2f}x zennit" if "zennit 1.0 LRP" in peaks else ""
        print(f"    {method:<18} {mib:9.1f} MiB{extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--only", choices=list(CASES), default=None)
    parser.add_argument("--memory-batch", type=int, default=None, help="batch of the memory runs (default: timing's)")
    parser.add_argument("--no-memory", action="store_true", help="timings only")
    args = parser.parse_args()
    batches = {"seed": 64, "vgg": 8, "resnet": 8}
    for case in [args.only] if args.only else list(CASES):
        torch.manual_seed(0)
        title, build, shape = CASES[case]
        batch = batches[case]
        size = "x".join(map(str, shape[1:]))
        measure(f"{title} ({size}, batch {batch})", build(), torch.randn(batch, *shape), args.repeats)
        if not args.no_memory:
            peak_memory(case, args.memory_batch or batch)


if __name__ == "__main__":
    main()
