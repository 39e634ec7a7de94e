"""The full audit (``lrp-audit run``: Prefect + private Ray actor pool + store) against bare engine
loops doing the same work (explain, summarise, write, commit) with the same parallelism, in
interleaved rounds, on the digits demo scaled up with jittered copies.

    .venv/bin/python benchmarks/pipeline.py                       # 21,564 samples (12 copies), 3 rounds
    .venv/bin/python benchmarks/pipeline.py --copies 4 --rounds 2 # quicker
    .venv/bin/python benchmarks/pipeline.py --baseline ../before --flow-only   # this flow vs another commit's

Variants, each a fresh subprocess per round, round-robin (so all see the same machine load):

* ``bare threads``: one process, W torch threads, every shard in turn;
* ``bare processes``: W processes with one torch thread each, shards split between them
  (the same shape as the flow's W Ray actors with one CPU each);
* ``flow``: ``lrp-audit run`` with W Ray workers of one CPU each.

Each is timed end to end (process start to exit: imports, model loads, Ray and the temporary Prefect
server included) and steady (samples / time from the earliest shard start to the last commit, i.e.
without the fixed start cost). Printed: samples/s of both, the flow / bare ratios for both, the
flow's fixed start cost (end-to-end time minus the time its shards ran) and where it goes (from the
flow's ``phase_seconds``), and the peak memory of the flow's process tree."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BARE_WORKER = r"""
import json, sys, time
t_proc = time.time()
import torch
from lrp_tasks.config import load_config
from lrp_tasks.audit.prepare import open_shard_explainer
config, threads, index, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
explainer = open_shard_explainer(load_config(config))
first, samples = None, 0
for shard_id, lo, hi in explainer.store.plan:
    if shard_id % count != index:
        continue
    t0 = time.time()
    samples += explainer.explain_shard(shard_id, lo, hi).samples
    first = t0 if first is None else first
print(json.dumps({"first_shard_start": first, "end": time.time(), "samples": samples}))
"""


def tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and its descendants, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += rss.get(p, 0)
        stack.extend(children.get(p, []))
    return total


class PeakMemory:
    """Peak resident memory of a process tree, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            time.sleep(0.05)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def write_config(path: Path, output: Path, copies: int, workers: int) -> Path:
    cfg = {
        "name": f"bench-{copies}",
        "output": str(output),
        "model": {
            "kind": "builder",
            "builder": "lrp_tasks.models.digits:build_digits_cnn",
            "weights": str(ROOT / "models" / "digits_cnn.safetensors"),
        },
        "dataset": {"kind": "digits", "split": "all", "repeat": copies},
        "composite": "EpsilonPlusFlat",
        "shard_size": 1024,
        "batch_size": 256,
        "ray": {"workers": workers, "cpus_per_worker": 1},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def env(root: Path = ROOT) -> dict[str, str]:
    out = {**os.environ, "PYTHONPATH": str(root)}
    out.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    out.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    return out


def bare(config: Path, workers: int, processes: bool) -> dict[str, float]:
    """W processes x 1 thread, or 1 process x W threads."""
    count = workers if processes else 1
    threads = 1 if processes else workers
    start = time.time()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", BARE_WORKER, str(config), str(threads), str(i), str(count)],
            stdout=subprocess.PIPE,
            text=True,
            env=env(),
            cwd=ROOT,
        )
        for i in range(count)
    ]
    outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    end = time.time()
    samples = sum(o["samples"] for o in outs)
    first = min(o["first_shard_start"] for o in outs)
    last = max(o["end"] for o in outs)
    return {"samples": samples, "wall": end - start, "steady": samples / (last - first), "fixed": first - start}


def flow(config: Path, workers: int, prefect_home: Path, root: Path = ROOT) -> dict[str, float]:
    """``lrp-audit run`` of the code in ``root`` (this checkout, or a baseline checkout of another commit)."""
    start = time.time()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows", "run", str(config), "--workers", str(workers), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=root,
        env={**env(root), "PREFECT_HOME": str(prefect_home), "PREFECT_LOGGING_LEVEL": "WARNING"},
    )
    memory = PeakMemory(proc.pid)
    out, err = proc.communicate()
    end = time.time()
    peak = memory.stop()
    if proc.returncode != 0:
        raise SystemExit(f"lrp-audit run failed ({proc.returncode}):\n{err[-3000:]}")
    result = json.loads(out[out.index("{") :])
    samples = result["samples_explained"]
    steady = result["samples_per_second_running"]
    return {
        "samples": samples,
        "wall": end - start,
        "steady": steady,
        "fixed": (end - start) - samples / steady,
        "peak": peak,
        "phases": result.get("phase_seconds", {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=12, help="copies of the 1,797 digits (12 → 21,564)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of another commit (git worktree add --detach DIR COMMIT): its flow runs interleaved "
        "with this one's, and the fixed start cost of both is printed (before/after)",
    )
    parser.add_argument("--flow-only", action="store_true", help="leave out the bare loops (with --baseline)")
    args = parser.parse_args()
    results: dict[str, list[dict]] = {} if args.flow_only else {"bare threads": [], "bare processes": []}
    results["flow"] = []
    if args.baseline:
        results["flow (baseline)"] = []
    with tempfile.TemporaryDirectory(prefix="lrp-bench-") as tmp:
        work = Path(tmp)
        for r in range(args.rounds):
            for name in results:
                tag = f"{name.replace(' ', '-')}-{r}"
                config = write_config(work / f"{tag}.yaml", work / tag, args.copies, args.workers)
                if name.startswith("flow"):
                    # a fresh Prefect home per run: every run pays the temporary server's start-up
                    root = args.baseline.resolve() if name == "flow (baseline)" else ROOT
                    res = flow(config, args.workers, work / f"prefect-{tag}", root)
                else:
                    res = bare(config, args.workers, processes=name == "bare processes")
                results[name].append(res)
                print(
                    f"round {r + 1} {name:<16} {res['samples']} samples: {res['samples'] / res['wall']:8,.0f} "
                    f"samples/s end to end, {res['steady']:8,.0f} steady, fixed start {res['fixed']:.1f} s",
                    flush=True,
                )

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] if key != "e2e" else r["samples"] / r["wall"] for r in results[name])

    w = args.workers
    print(f"\nmedians over {args.rounds} interleaved rounds, {results['flow'][0]['samples']} samples, W = {w}:")
    print(f"{'variant':<44}{'end to end':>12}{'steady':>10}{'fixed start':>13}")
    labels = {
        "bare threads": f"bare loop, 1 process x {w} threads",
        "bare processes": f"bare loop, {w} processes x 1 thread",
        "flow": f"lrp-audit run, {w} Ray workers x 1 thread",
        "flow (baseline)": f"lrp-audit run of {args.baseline}",
    }
    for name, label in labels.items():
        if name in results:
            print(f"{label:<44}{med(name, 'e2e'):>12,.0f}{med(name, 'steady'):>10,.0f}{med(name, 'fixed'):>12.1f}s")
    if args.baseline:
        print(
            f"fixed start: before (baseline) {med('flow (baseline)', 'fixed'):.1f} s, "
            f"after {med('flow', 'fixed'):.1f} s; "
            f"steady flow after / before {med('flow', 'steady') / med('flow (baseline)', 'steady'):.2f}, "
            f"end to end {med('flow', 'e2e') / med('flow (baseline)', 'e2e'):.2f}"
        )
    for base in ("bare threads", "bare processes"):
        if base not in results:
            continue
        print(
            f"flow / {base}: end to end {med('flow', 'e2e') / med(base, 'e2e'):.2f}, "
            f"steady {med('flow', 'steady') / med(base, 'steady'):.2f}"
        )
    flows = results["flow"]
    phases = {k: statistics.median(r["phases"].get(k, 0.0) for r in flows) for k in flows[0]["phases"]}
    print("flow's time, median seconds per phase:")
    for key, value in phases.items():
        print(f"  {key:<32}{value:8.2f}")
    print(f"flow's peak memory (process tree): {statistics.median(r['peak'] for r in results['flow']) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
