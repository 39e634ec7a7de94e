"""The re-run of a finished audit: ``lrp-audit run`` when every shard is committed, through the
Prefect flow (``LRP_AUDIT_ALWAYS_FLOW=1``: a temporary Prefect server, the flow engine, the skip of
every shard, the report) against the path that reports without Prefect or Ray (flows/finished.py),
in interleaved rounds on the same finished audit, each a fresh process timed end to end, with the
command's own phase breakdown (``phase_seconds``).

    .venv/bin/python benchmarks/rerun.py                 # the demo config (1,797 digits), 3 rounds
    .venv/bin/python benchmarks/rerun.py --rounds 2 --config conf/demo.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def run(config: Path, env: dict[str, str]) -> tuple[float, dict[str, float]]:
    began = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "flows", "run", str(config), "--no-progress"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(f"lrp-audit run failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout[proc.stdout.index("{") : proc.stdout.rindex("}") + 1])
    return seconds, result.get("phase_seconds", {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "conf" / "demo.yaml"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = yaml.safe_load(Path(args.config).read_text())
        here = Path(args.config).resolve().parent
        weights = settings["model"].get("weights")
        if weights and not Path(weights).is_absolute():
            settings["model"]["weights"] = str((here / weights).resolve())
        settings["output"] = str(Path(tmp) / "audit")
        config = Path(tmp) / "audit.yaml"
        config.write_text(yaml.safe_dump(settings))
        env = {**os.environ, "PREFECT_HOME": str(Path(tmp) / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
               "RAY_USAGE_STATS_ENABLED": "0"}
        first, _ = run(config, env)
        print(f"first run (explains every sample): {first:.1f} s", file=sys.stderr)
        variants = {"through the flow": {**env, "LRP_AUDIT_ALWAYS_FLOW": "1"}, "finished, no flow": env}
        times: dict[str, list[float]] = {name: [] for name in variants}
        phases: dict[str, dict[str, float]] = {}
        for _ in range(args.rounds):
            for name, variant in variants.items():
                seconds, phases[name] = run(config, variant)
                times[name].append(seconds)
    flow, fast = (statistics.median(times[n]) for n in variants)
    print(f"re-run of a finished audit ({args.config}), median of {args.rounds} interleaved rounds, end to end:")
    for name in variants:
        shown = ", ".join(f"{k} {v:.1f} s" for k, v in phases[name].items() if v >= 0.05)
        print(f"  {name:<18} {statistics.median(times[name]):6.1f} s   ({shown})")
    print(f"  ratio: {fast / flow:.2f} of the flow's time")


if __name__ == "__main__":
    main()
