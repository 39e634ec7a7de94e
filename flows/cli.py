"""``lrp-audit``: run an audit, inspect its results, validate a config.

    lrp-audit run conf/demo.yaml            # local Ray + a temporary local Prefect, nothing to start
    lrp-audit summary audits/demo           # the per-audit table, read back from Parquet
    lrp-audit validate conf/demo.yaml       # check a config (and the files it names) without running
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from flows import cli_report
from lrp_tasks.config import ConfigError, check_files, load_config


def _quiet_defaults() -> None:
    """No usage reporting from a command-line run unless the user asked for it."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


class ProgressBar:
    """A one-line progress bar on stderr, redrawn after every committed shard."""

    def __init__(self, stream: Any = sys.stderr, width: int = 30) -> None:
        self.stream, self.width = stream, width

    def __call__(self, progress: Any) -> None:
        filled = int(self.width * progress.percent / 100)
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r[{bar}] {progress.line()}")
        if progress.done_shards >= progress.total_shards:
            self.stream.write("\n")
        self.stream.flush()


def cmd_run(args: argparse.Namespace) -> int:
    _quiet_defaults()
    if not args.no_progress:
        # the bar replaces per-shard INFO lines on the terminal; they still reach the Prefect API
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_FLOW_RUNS_LEVEL", "WARNING")
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    from flows import progress
    from flows.audit import audit

    cfg = load_config(args.config)
    updates: dict[str, Any] = {}
    if args.output:
        updates["output"] = args.output
    if args.workers:
        updates["ray"] = cfg.ray.model_copy(update={"workers": args.workers})
    if args.ray_address:
        updates["ray"] = updates.get("ray", cfg.ray).model_copy(update={"address": args.ray_address})
    cfg = cfg.model_copy(update=updates)
    bar = ProgressBar()
    if not args.no_progress:
        progress.add_listener(bar)
    try:
        result = audit(config=cfg, fresh=args.fresh, compare_with=args.compare_with)
    finally:
        progress.remove_listener(bar)
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from flows.report import audit_statistics
    from lrp_tasks.store import open_audit

    audit_dir = open_audit(args.audit)
    frame = audit_dir.summaries
    stats = audit_statistics(frame)
    print(f"audit {audit_dir.attrs.get('audit_id', '?')} at {args.audit}")
    print(f"committed shards: {len(audit_dir.committed_shards)}")
    width = max(len(k) for k in stats) if stats else 0
    for key, value in stats.items():
        shown = f"{value:.6g}" if isinstance(value, float) else value
        print(f"  {key:<{width}}  {shown}")
    if not frame.empty:
        top = frame[frame["target_rank"] == 0]
        table = top.groupby("predicted").agg(
            samples=("sample_index", "size"),
            mean_probability=("predicted_probability", "mean"),
            mean_relevance_sum=("relevance_sum", "mean"),
            mean_abs_conservation_error=("conservation_error", lambda s: s.abs().mean()),
        )
        print()
        print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    check_files(cfg, source=args.config)
    print(f"{args.config}: valid audit '{cfg.name}' -> {cfg.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lrp-audit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run (or resume) the audit a YAML config describes")
    run.add_argument("config")
    run.add_argument("--fresh", action="store_true", help="wipe an existing store instead of resuming it")
    run.add_argument("--output", help="override the config's output location")
    run.add_argument("--workers", type=int, help="override ray.workers")
    run.add_argument("--ray-address", help="run on an existing Ray cluster (e.g. ray://head:10001)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    run.add_argument("--compare-with", help="an earlier audit directory to compare the result with")
    run.set_defaults(func=cmd_run)
    summary = sub.add_parser("summary", help="print the summary table of an audit directory")
    summary.add_argument("audit")
    summary.set_defaults(func=cmd_summary)
    validate = sub.add_parser("validate", help="validate a config and the files it names")
    validate.add_argument("config")
    validate.set_defaults(func=cmd_validate)
    cli_report.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"lrp-audit: invalid configuration\n{exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a readable last line instead of a bare traceback for expected failures
        from lrp_tasks.distributed import ClusterResourceError, ShardsFailedError
        from lrp_tasks.store import AuditStoreError

        if isinstance(exc, ShardsFailedError | ClusterResourceError | AuditStoreError | FileNotFoundError):
            print(f"lrp-audit: {exc}", file=sys.stderr)
            return 1
        if cli_report.is_user_error(args, exc):
            print(f"lrp-audit: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
