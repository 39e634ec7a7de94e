"""Faithfulness of each composite on an audit config (default: the demo): the share of samples whose MoRF AOPC beats the
random-order AOPC, and the mean AOPCs, for the five presets and gradient×input (for a transformer config, one whose
composite is AttnLRP or CPLRP: AttnLRP, CP-LRP, AttnLRP with γ on Linear, two CNN presets and gradient×input).

Runs the audit's own shard task (model, dataset and metrics settings of the config; no Ray or Prefect)
once per composite into a temporary store and prints a markdown table (the one in the README):

    .venv/bin/python scripts/faithfulness_table.py [conf/demo.yaml] [--samples N]
    .venv/bin/python scripts/faithfulness_table.py conf/resnet_digits.yaml    # the ResNet table
    .venv/bin/python scripts/faithfulness_table.py conf/vit_digits.yaml       # the ViT table

Gradient×input is LRP-0 on every Conv2d/Linear layer of the canonized ReLU network (max pooling routes
to the winner, as the gradient does), seeded with the logit (a one-hot seed would divide the map by the
logit); on a transformer it is LRP-0 on every step (Linear, LayerNorm, GELU, both operands of each
matmul) with the softmax rule, which equals gradient×input there too; the script checks that equality
on the first batch."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lrp_tasks.audit.explainer import ShardExplainer  # noqa: E402
from lrp_tasks.audit.prepare import open_shard_explainer  # noqa: E402
from lrp_tasks.config import config_dir, parse_config  # noqa: E402
from lrp_tasks.store import open_audit  # noqa: E402

COMPOSITES: dict[str, Any] = {
    "EpsilonGammaBox": {"preset": "EpsilonGammaBox", "low": 0.0, "high": 1.0},
    "EpsilonPlus": "EpsilonPlus",
    "EpsilonAlpha2Beta1": "EpsilonAlpha2Beta1",
    "EpsilonPlusFlat": "EpsilonPlusFlat",
    "EpsilonAlpha2Beta1Flat": "EpsilonAlpha2Beta1Flat",
    "gradient×input": {"rules": [{"type": ["Conv2d", "Linear"], "rule": "Zero"}]},
}
GRADIENT_X_INPUT = "gradient×input"
TRANSFORMER_COMPOSITES: dict[str, Any] = {
    "AttnLRP": "AttnLRP",
    "CPLRP": "CPLRP",
    "AttnLRP (γ=0.25 on Linear)": {"preset": "AttnLRP", "linear_gamma": 0.25},
    "EpsilonPlusFlat": "EpsilonPlusFlat",
    "EpsilonPlus": "EpsilonPlus",
    GRADIENT_X_INPUT: {"rules": [{"type": ["Conv2d", "Linear", "LayerNorm", "GELU", "MatMul"], "rule": "Zero"}]},
}
TRANSFORMER_PRESETS = ("AttnLRP", "CPLRP")
DEFAULT_METRICS = {
    "region_perturbation": {"patch_size": 2, "steps": 8, "orders": ["morf", "lerf", "random"], "baseline": "mean"},
    "pixel_flipping": {"steps": 16, "orders": ["morf", "lerf", "random"], "baseline": "mean"},
}


def check_gradient_times_input(ex: ShardExplainer) -> float:
    """Max |LRP-0 − gradient×input| on the first batch (float32 round-off expected)."""
    batch = ex.dataset.read(0, min(64, len(ex.dataset)))
    x = batch.x.clone().requires_grad_(True)
    out = ex.model(x)
    target = out.argmax(1)
    (grad,) = torch.autograd.grad(out.gather(1, target[:, None]).sum(), x)
    lrp0 = ex.analyzer.analyze(batch.x, target, seed=ex.cfg.seed).val
    return float((lrp0 - grad * batch.x).abs().max())


def composites_for(config: dict[str, Any]) -> dict[str, Any]:
    """The composites to compare: the transformer set when the config explains with AttnLRP or CPLRP."""
    composite = config.get("composite")
    preset = composite.get("preset") if isinstance(composite, dict) else composite
    return TRANSFORMER_COMPOSITES if preset in TRANSFORMER_PRESETS else COMPOSITES


def run(
    config: dict[str, Any], composite: Any, out: Path, samples: int | None, gradient: bool
) -> tuple[dict[str, Any], float]:
    seed = "logit" if gradient else config.get("seed", "one-hot")
    cfg = parse_config({**config, "composite": composite, "seed": seed, "output": str(out)})
    ex = open_shard_explainer(cfg, device="cpu")
    began = time.perf_counter()
    for shard_id, start, stop in ex.store.plan:
        if samples is not None and start >= samples:
            break
        ex.explain_shard(shard_id, start, stop)
    seconds = time.perf_counter() - began
    frame = open_audit(str(out)).summaries
    row: dict[str, Any] = {"samples": len(frame)}
    for metric, short in (("region_perturbation", "RP"), ("pixel_flipping", "PF")):
        if frame[f"{metric}_aopc_morf"].isna().all():
            continue
        gap = frame[f"{metric}_morf_minus_random"]
        row[f"{short} MoRF>random"] = float((gap > 0).mean())
        for order in ("morf", "lerf", "random"):
            row[f"{short} AOPC {order}"] = float(frame[f"{metric}_aopc_{order}"].mean())
    if gradient:
        row["check"] = check_gradient_times_input(ex)
    return row, seconds


def table_config(path: str | Path) -> dict[str, Any]:
    """The config file as a dict, its local paths resolved against its own directory (as in a run), with
    the perturbation metrics on (the demo's settings where it has none) and no Efficient MPRT."""
    config = yaml.safe_load(Path(path).read_text())
    here = config_dir(path)
    for section, key in (("model", "weights"), ("model", "module_dir"), ("dataset", "path")):
        value = (config.get(section) or {}).get(key)
        if value is not None and not Path(value).is_absolute():
            config[section][key] = os.path.normpath(here / value)
    metrics = config.get("metrics") or {}
    if not (metrics.get("region_perturbation") or metrics.get("pixel_flipping")):
        metrics = {**metrics, **DEFAULT_METRICS}
    config["metrics"] = {k: v for k, v in metrics.items() if k != "efficient_mprt"}
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default=str(ROOT / "conf" / "demo.yaml"))
    parser.add_argument("--samples", type=int, help="explain only the first shards covering N samples")
    args = parser.parse_args()
    config = table_config(args.config)
    print(f"config {args.config}; metrics {config['metrics']}", file=sys.stderr)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, composite) in enumerate(composites_for(config).items()):
            out = Path(tmp) / f"audit-{i}"
            rows[name], seconds = run(config, composite, out, args.samples, name == GRADIENT_X_INPUT)
            print(f"{name}: {rows[name]} ({seconds:.1f} s)", file=sys.stderr)
    columns = [c for c in next(iter(rows.values())) if c not in ("samples", "check")]
    print("| composite | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name, row in rows.items():
        cells = [f"{row[c]:.1%}" if "MoRF>random" in c else f"{row[c]:.3f}" for c in columns]
        print(f"| {name} | " + " | ".join(cells) + " |")
    n = next(iter(rows.values()))["samples"]
    grad_check = rows[GRADIENT_X_INPUT]["check"]
    print(f"\n{n} samples; gradient×input = LRP-0 checked to max |difference| {grad_check:.2e}")
    assert np.isfinite(grad_check) and grad_check < 1e-4, "LRP-0 differs from gradient×input"


if __name__ == "__main__":
    main()
