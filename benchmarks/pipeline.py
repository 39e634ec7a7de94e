"""The full audit flow (Prefect + Ray actor pool + store) against the bare engine loop in one
process, on the digits demo scaled up with jittered copies, measured in one run.

    .venv/bin/python benchmarks/pipeline.py                 # 21,564 samples (repeat 12) and 1,797
    .venv/bin/python benchmarks/pipeline.py --repeat 2      # quicker

Prints samples/s for both and their ratio, the flow's cold start (flow start → first shard
committed: temporary Prefect server, Ray start, model loads) separately, and the peak memory
(resident set of this process and all its descendants, sampled every 50 ms)."""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="lrp-bench-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

ROOT = Path(__file__).resolve().parents[1]


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
    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(os.getpid()))
            time.sleep(0.05)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def config(repeat: int, output: str, workers: int):
    from lrp_tasks.config import parse_config

    return parse_config(
        {
            "name": f"bench-{repeat}",
            "output": output,
            "model": {"kind": "builder", "builder": "lrp_tasks.models.digits:build_digits_cnn",
                      "weights": str(ROOT / "models" / "digits_cnn.safetensors")},
            "dataset": {"kind": "digits", "split": "all", "repeat": repeat},
            "composite": "EpsilonPlusFlat",
            "shard_size": 1024,
            "batch_size": 256,
            "ray": {"workers": workers, "cpus_per_worker": 1},
        }
    )


def bare_loop(repeat: int, workdir: str, threads: int) -> tuple[float, int]:
    """The same work (explain, summarise, write, commit) in this process, no Prefect, no Ray."""
    import torch

    from lrp_tasks.shard import ShardExplainer, audit_config_for_workers

    torch.set_num_threads(threads)
    explainer = ShardExplainer(audit_config_for_workers(config(repeat, f"{workdir}/bare-{repeat}", 1)))
    start = time.perf_counter()
    samples = 0
    for shard_id, lo, hi in explainer.store.plan:
        samples += explainer.explain_shard(shard_id, lo, hi).samples
    return time.perf_counter() - start, samples


def flow_run(repeat: int, workdir: str, workers: int) -> dict[str, float]:
    from flows import progress
    from flows.audit import audit

    stamps: list[tuple[float, int]] = []

    def listener(p: progress.Progress) -> None:
        stamps.append((time.perf_counter(), p.samples))

    progress.add_listener(listener)
    start = time.perf_counter()
    try:
        result = audit(config=config(repeat, f"{workdir}/flow-{repeat}", workers))
    finally:
        progress.remove_listener(listener)
    end = time.perf_counter()
    (t_first, s_first), (t_last, s_last) = stamps[0], stamps[-1]
    return {
        "samples": result["samples_explained"],
        "total_s": end - start,
        "cold_start_s": t_first - start,
        "steady_samples_per_s": (s_last - s_first) / (t_last - t_first) if t_last > t_first else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=12, help="copies of the 1,797 digits (12 → 21,564)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lrp-bench-") as workdir:
        bare_s, bare_n = bare_loop(args.repeat, workdir, threads=args.workers)
        bare_rate = bare_n / bare_s
        rows = []
        for repeat in sorted({1, args.repeat}):
            with PeakMemory() as mem:
                flow = flow_run(repeat, workdir, args.workers)
            rows.append((repeat, flow, mem.peak))
    print(f"\nbare engine loop (1 process, {args.workers} threads): {bare_n} samples in {bare_s:.1f} s = "
          f"{bare_rate:,.0f} samples/s")
    for _, flow, peak in rows:
        print(f"flow, {flow['samples']:>6} samples ({args.workers} Ray workers): total {flow['total_s']:.1f} s, "
              f"cold start {flow['cold_start_s']:.1f} s, steady {flow['steady_samples_per_s']:,.0f} samples/s, "
              f"peak memory {peak / 2**30:.2f} GiB")
    steady = rows[-1][1]["steady_samples_per_s"]
    print(f"ratio flow / bare (cold start excluded): {steady / bare_rate:.2f}")


if __name__ == "__main__":
    main()
