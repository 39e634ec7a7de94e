"""Faithfulness metrics: how fast, and what they cost an audit.

1. Region perturbation, 100 steps, samples/s: our batched implementation against Quantus 0.6's
   ``RegionPerturbation`` on the same model, inputs, relevance, targets and torch threads, run
   round-robin in one process (needs Quantus: run it with .venv-quantus's python). MoRF order, "black"
   baseline, logits, no normalisation, 2×2 patches. Models: a LeNet (1×28×28, the model of Quantus's
   tutorials) and the engine benchmark's seed CNN (3×32×32). "forward only" runs the model on the same
   number of inputs (samples × 101) in our batch size: the floor no implementation can go below.
2. The cost of the metrics of conf/demo.yaml: the shard task alone over the whole demo dataset (in
   process, no Ray or Prefect) and the demo audit's total time (``lrp-audit run``, fresh store), each
   with those metrics and with the ``metrics:`` section removed, alternating (needs the project's .venv).

    PYTHONPATH=. .venv-quantus/bin/python benchmarks/metrics.py --only perturbation
    .venv/bin/python benchmarks/metrics.py --only audit [--audit-rounds 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lrp_tasks.metrics import RegionPerturbation  # noqa: E402
from tests.engine.models import randomize_batchnorm, seed_cnn  # noqa: E402


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each function per repeat, run round-robin (a machine slowing down hits all alike)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def lenet() -> nn.Sequential:
    """LeNet for 1×28×28 inputs (the layout of quantus.helpers.model.models.LeNet)."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Flatten(),
        nn.Linear(256, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, 10),
    ).eval()


def model_and_inputs(name: str, samples: int) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    if name == "lenet":
        return lenet(), torch.rand(samples, 1, 28, 28)
    model = seed_cnn(classes=100)
    randomize_batchnorm(model)
    return model.eval(), torch.rand(samples, 3, 32, 32)


def perturbation(name: str, samples: int, steps: int, threads: int, repeats: int, batch_size: int) -> None:
    torch.set_num_threads(threads)
    model, x = model_and_inputs(name, samples)
    relevance = torch.randn(x.shape) * x
    with torch.no_grad():
        target = model(x).argmax(1)
    ours = RegionPerturbation(2, steps, ("morf",), "black", batch_size=batch_size)
    many = x.repeat_interleave(steps + 1, dim=0)

    @torch.inference_mode()
    def forward_only() -> None:
        for lo in range(0, len(many), batch_size):
            model(many[lo : lo + batch_size])

    fns: dict[str, Callable[[], object]] = {
        "lrp-audit": lambda: ours.curves(model, x, relevance, target),
        "forward only": forward_only,
    }
    have_quantus = importlib.util.find_spec("quantus") is not None
    if have_quantus:
        import warnings

        import quantus

        warnings.simplefilter("ignore")
        metric = quantus.RegionPerturbation(
            patch_size=2,
            order="morf",
            regions_evaluation=steps,
            abs=False,
            normalise=False,
            perturb_baseline="black",
            disable_warnings=True,
        )
        xn, an, yn = x.numpy(), relevance.numpy(), target.numpy()

        def run_quantus() -> object:
            return metric(
                model=model,
                x_batch=xn,
                y_batch=yn,
                a_batch=an,
                softmax=False,
                channel_first=True,
                device="cpu",
                batch_size=samples,
            )

        fns["quantus"] = run_quantus
        # Same numbers before timing anything (float32 here: loose tolerance).
        q = np.asarray(run_quantus())
        c = ours.curves(model, x, relevance, target)["morf"].numpy()
        np.testing.assert_allclose(c[:, :1] - c[:, 1:], q, rtol=1e-3, atol=1e-3)
    for fn in fns.values():
        fn()  # warm-up
    times = interleaved(fns, repeats)
    shape = "×".join(str(s) for s in x.shape[1:])
    print(
        f"region perturbation, {name} ({shape}): {samples} samples, 2×2 patches, {steps} steps, MoRF, "
        f"{threads} thread(s), {repeats} round-robin repeats (median)"
    )
    rate = {fn: samples / statistics.median(t) for fn, t in times.items()}
    for fn, r in rate.items():
        print(f"  {fn:<13} {r:10.1f} samples/s   ({statistics.median(times[fn]):.3f} s per call)")
    if have_quantus:
        print(f"  ratio lrp-audit / quantus: {rate['lrp-audit'] / rate['quantus']:.1f}×")
    else:
        print("  (quantus not importable: run with .venv-quantus/bin/python for the comparison)")


def shard_task_times(rounds: int, config: Path, threads: int) -> None:
    """The shard task alone (no Ray, no Prefect) over the whole dataset, with and without metrics."""
    import yaml

    from lrp_tasks.audit.explainer import ShardExplainer
    from lrp_tasks.audit.prepare import open_shard_explainer
    from lrp_tasks.config import parse_config

    torch.set_num_threads(threads)
    data = yaml.safe_load(config.read_text())
    data["model"]["weights"] = str(ROOT / data["model"]["weights"])
    with tempfile.TemporaryDirectory() as tmp:
        explainers = {}
        for name, metrics in (("without metrics", {}), ("with metrics", data.get("metrics") or {})):
            cfg = {**data, "metrics": metrics, "output": str(Path(tmp) / name.replace(" ", "-"))}
            explainers[name] = open_shard_explainer(parse_config(cfg), device="cpu")

        def run(ex: ShardExplainer) -> None:
            for shard_id, start, stop in ex.store.plan:
                part = ex.store.layout.part_path(shard_id)
                if os.path.exists(part):  # uncommit, so that every repeat does the same work
                    os.unlink(part)
                ex.explain_shard(shard_id, start, stop)

        times = interleaved({name: (lambda ex=ex: run(ex)) for name, ex in explainers.items()}, rounds)
        n = len(next(iter(explainers.values())).dataset)
        base, full = (statistics.median(t) for t in times.values())
        print(
            f"shard task over the {n} samples of {config.name} ({threads} thread(s), median of {rounds}): "
            f"without metrics {base:.2f} s ({n / base:.0f} samples/s), with metrics {full:.2f} s "
            f"({n / full:.0f} samples/s): metrics add {full - base:.2f} s ({full / base:.2f}×)"
        )


def audit_times(rounds: int, config: Path) -> None:
    import yaml

    data = yaml.safe_load(config.read_text())
    if not data.get("metrics"):
        raise SystemExit(f"{config} has no metrics: section to compare against")
    with tempfile.TemporaryDirectory() as tmp:
        variants = {}
        for name, metrics in (("without metrics", None), ("with metrics", data["metrics"])):
            cfg = {k: v for k, v in data.items() if k != "metrics"}
            if metrics is not None:
                cfg["metrics"] = metrics
            for key in ("weights",):
                if key in cfg["model"] and not Path(cfg["model"][key]).is_absolute():
                    cfg["model"][key] = str(ROOT / cfg["model"][key])
            path = Path(tmp) / f"{len(variants)}.yaml"
            path.write_text(yaml.safe_dump(cfg))
            variants[name] = path
        times: dict[str, list[float]] = {name: [] for name in variants}
        env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "RAY_USAGE_STATS_ENABLED": "0"}
        env.setdefault("PREFECT_HOME", str(Path(tmp) / "prefect"))
        env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
        for _ in range(rounds):
            for name, path in variants.items():
                out = Path(tmp) / "audit"
                cmd = [
                    sys.executable,
                    "-m",
                    "flows",
                    "run",
                    str(path),
                    "--fresh",
                    "--output",
                    str(out),
                    "--no-progress",
                ]
                start = time.perf_counter()
                proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
                seconds = time.perf_counter() - start
                if proc.returncode != 0:
                    raise SystemExit(f"{name}: lrp-audit run failed\n{proc.stderr[-3000:]}")
                result = json.loads(proc.stdout[proc.stdout.index("{") :])
                times[name].append(seconds)
                print(
                    f"  {name:<16} total {seconds:6.1f} s, explaining {result['seconds']:.1f} s "
                    f"({result['samples_per_second']:.0f} samples/s)"
                )
        base, full = (statistics.median(times[n]) for n in variants)
        print(
            f"demo audit total (median of {rounds}): without metrics {base:.1f} s, with metrics {full:.1f} s "
            f"(+{full - base:.1f} s, {full / base:.2f}×)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("perturbation", "audit"))
    parser.add_argument("--models", nargs="+", default=["lenet", "seed_cnn"], choices=("lenet", "seed_cnn"))
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1024, help="our perturbed inputs per forward pass")
    parser.add_argument("--audit-rounds", type=int, default=1)
    parser.add_argument("--config", type=Path, default=ROOT / "conf" / "demo.yaml")
    args = parser.parse_args()
    if args.only in (None, "perturbation"):
        for name in args.models:
            perturbation(name, args.samples, args.steps, args.threads, args.repeats, args.batch_size)
    if args.only in (None, "audit"):
        if importlib.util.find_spec("prefect") is None:
            print("audit timing skipped: prefect not importable (run with .venv/bin/python)")
        else:
            shard_task_times(args.audit_rounds + 1, args.config, args.threads)
            audit_times(args.audit_rounds, args.config)


if __name__ == "__main__":
    main()
