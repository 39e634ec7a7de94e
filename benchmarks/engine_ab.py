"""This branch's engine against another version of it, interleaved in one process on the same
inputs (EpsilonPlusFlat on the canonized model); checks both give the same relevance, prints the
median times and their ratio. To compare with main:

    mkdir -p /tmp/old && git archive main lrp_tasks/engine | tar -x -C /tmp/old \\
        && mv /tmp/old/lrp_tasks/engine /tmp/old/oldengine
    .venv/bin/python benchmarks/engine_ab.py --old /tmp/old [--repeats 9] [--only resnet]
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.engine import CASES
from lrp_tasks import engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", required=True, help="directory holding the other engine as package 'oldengine'")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--only", choices=list(CASES), default=None)
    args = parser.parse_args()
    sys.path.insert(0, args.old)
    old_engine = importlib.import_module("oldengine")
    warnings.simplefilter("ignore")  # conservation warnings of either version are not what is measured
    batches = {"seed": 64, "vgg": 8, "resnet": 8}
    for case in [args.only] if args.only else list(CASES):
        torch.manual_seed(0)
        title, build, shape = CASES[case]
        model = build().eval()
        x = torch.randn(batches[case], *shape)
        old = old_engine.LRP(old_engine.canonize(model), old_engine.EpsilonPlusFlat())
        new = engine.LRP(engine.canonize(model), engine.EpsilonPlusFlat())
        torch.testing.assert_close(new(x).val, old(x).val, rtol=1e-4, atol=1e-6)
        times: dict[str, list[float]] = {"old": [], "new": []}
        for _ in range(args.repeats):
            for key, analyzer in (("old", old), ("new", new)):
                start = time.perf_counter()
                analyzer(x)
                times[key].append(time.perf_counter() - start)
        o, n = statistics.median(times["old"]), statistics.median(times["new"])
        print(f"{title} (batch {len(x)}): other {o * 1e3:.0f} ms, this {n * 1e3:.0f} ms, this/other {n / o:.3f}")


if __name__ == "__main__":
    main()
