"""``lrp-audit run`` and ``lrp-audit validate``: every check before any Prefect server or Ray starts,
then the audit flow with a progress display."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from flows.cli.environment import DASHBOARD_ENV, quiet_defaults
from flows.interrupt import RunInterrupted, interruption_signal, stop_on_signals
from lrp_tasks.config import AuditConfig, apply_overrides, config_dir, load_config

if TYPE_CHECKING:
    from lrp_tasks.audit.prepare import Preparation


def cmd_run(args: argparse.Namespace) -> int:
    began = time.perf_counter()
    # the first line comes before anything heavy is imported: checks, model load and Prefect's start
    # take tens of seconds on a big model, and a silent command looks hung
    print(PREPARING.format(config=args.config), file=sys.stderr, flush=True)
    quiet_defaults()
    if not args.no_progress:
        # the progress display replaces per-shard INFO lines on the terminal; they still reach the Prefect API
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_FLOW_RUNS_LEVEL", "WARNING")
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    if args.ray_dashboard:
        os.environ[DASHBOARD_ENV] = "1"
    with stop_on_signals() as stopper:
        try:
            return _run(args, began, stopper.spared)
        except BaseException as exc:
            signum = stopper.received or interruption_signal(exc)
            if signum is None:
                raise
            # whatever the interruption surfaced as: Prefect's own SIGTERM handler (active while the
            # flow runs) raises TerminationSignal, which Ray's C code can turn into a SystemError
            stopper.received = signum
            raise RunInterrupted(signum) from None


PREPARING = "lrp-audit: preparing {config}: checking the config and its files, loading the model, explaining one sample"
STARTING = "lrp-audit: checked in {seconds:.1f} s; starting the Prefect server and the audit flow (Ray, workers)"


def _run(args: argparse.Namespace, began: float, spared: set[int]) -> int:
    from flows.temporary_server import start_in_background

    cfg, preparation = _run_config(args)  # every check, before any Prefect server or Ray starts
    from flows.console import rates_line
    from flows.finished import finished_result

    finished = finished_result(preparation, args)
    if finished is not None:  # nothing to explain and nothing else due: no Prefect server, no Ray
        ended = time.perf_counter()
        finished["phase_seconds"]["command_total"] = ended - began
        print(json.dumps(finished, indent=2, default=str))
        print(rates_line(finished, ended - began) + " (no Prefect server or Ray started)", file=sys.stderr)
        return 0
    print(STARTING.format(seconds=time.perf_counter() - began), file=sys.stderr, flush=True)
    server = start_in_background()  # meanwhile Prefect's flow engine, Ray and the flow are imported
    from flows import progress
    from flows.audit import audit, config_from_file
    from flows.cli.failures import quiet_console
    from flows.console import progress_display

    quiet_console()  # Prefect's tracebacks of a failed run go to the log file; the command prints one line

    waited = time.perf_counter()
    if server is not None:
        # stopped by Prefect's exit hook, after its log and event workers have flushed to it
        process = server.wait().server_process
        if process is not None:
            spared.add(process.pid)
    waited = time.perf_counter() - waited
    flow_called = time.perf_counter()
    display = None if args.no_progress else progress_display(sys.stderr)
    if display is not None:
        progress.add_listener(display)
        progress.add_stage_listener(display.stage)
    try:
        with config_from_file():  # the config is the file args.config: its builder is trusted code
            result = audit(
                config=cfg, fresh=args.fresh, compare_with=args.compare_with, base_dir=str(config_dir(args.config))
            )
    finally:
        if display is not None:
            progress.remove_listener(display)
            progress.remove_stage_listener(display.stage)
            display.close()
    ended = time.perf_counter()
    phases = result.setdefault("phase_seconds", {})
    phases["command_before_flow"] = flow_called - began  # imports, config, the temporary server
    phases["waiting_for_prefect_server"] = waited  # the part of the server's start not hidden by imports
    phases["prefect_flow_engine"] = (ended - flow_called) - sum(
        phases.get(k, 0.0) for k in ("prepare_store", "explain", "sanity_check", "report", "spray")
    )
    phases["command_total"] = ended - began
    print(json.dumps(result, indent=2, default=str))
    print(rates_line(result, ended - began), file=sys.stderr)
    return 0


def _run_config(args: argparse.Namespace) -> tuple[AuditConfig, Preparation]:
    """The config file with the command line's overrides, validated together, then every check of
    the run (files, model, one sample) before any Prefect server or Ray starts."""
    from lrp_tasks.audit.prepare import prepare_audit

    cfg = apply_overrides(load_config(args.config), _overrides(args), source=f"{args.config} (command line)")
    # a foreign directory or a store another run holds is refused before the model loads; the model
    # loaded here is handed over to the flow's store preparation (keep=True): one load in the driver
    preparation = prepare_audit(
        cfg,
        root=config_dir(args.config),
        source=args.config,
        keep=True,
        before_load=lambda resolved: _check_output_is_free(resolved.output),
    )
    return cfg, preparation


def _check_output_is_free(output: str) -> None:
    """Fail at once, before the model loads and Prefect and Ray start, when the output is not an audit
    store or another run writes it (the flow checks again, holding the lock)."""
    from lrp_tasks.store import StoreLockedError, lock_holder
    from lrp_tasks.store.directory import refuse_foreign
    from lrp_tasks.store.lock import describe

    if "://" in output or not os.path.isdir(output):
        return
    refuse_foreign(os.path.abspath(output))
    holder = lock_holder(output)
    if holder is not None:
        raise StoreLockedError(
            f"audit store {os.path.abspath(output)} is being written by another run: {describe(holder)}. "
            "One run writes a store at a time: wait for it to finish, or stop it."
        )


def _overrides(args: argparse.Namespace) -> dict[str, tuple[str, Any]]:
    """``{config field: (option, value)}`` of the options given (0 and "" are values, not absence)."""
    overrides: dict[str, tuple[str, Any]] = {}
    if args.output is not None:  # typed on the command line: relative to the working directory
        output = args.output if "://" in args.output or not args.output else os.path.abspath(args.output)
        overrides["output"] = ("--output", output)
    if args.workers is not None:
        overrides["ray.workers"] = ("--workers", args.workers)
    if args.ray_address is not None:
        overrides["ray.address"] = ("--ray-address", args.ray_address)
    return overrides


def cmd_validate(args: argparse.Namespace) -> int:
    from lrp_tasks.audit.prepare import estimate_seconds, prepare_audit, store_outcome

    cfg = load_config(args.config)
    root = config_dir(args.config)
    preparation = prepare_audit(cfg, root=root, source=args.config)
    spec = preparation.spec
    output = preparation.config.output
    shards = -(-spec.n_samples // spec.shard_size)
    print(f"{args.config}: valid audit '{cfg.name}' -> {output}")
    print(f"  model: {spec.n_classes} classes; rules (step => rule):")
    for line in spec.composite.splitlines()[1:-1]:
        print(f"    {line.strip().rstrip(',')}")
    print(f"  dataset: {spec.n_samples} samples of shape {spec.sample_shape}, {shards} shard(s) of {spec.shard_size}")
    if preparation.probe is not None:
        low, high = preparation.probe.relevance_range
        print(f"  probe (first sample): relevance from {low:.4g} to {high:.4g}; stored as {spec.dtype}")
    print(f"  store: {store_outcome(preparation)}")
    seconds, size = estimate_seconds(preparation)
    workers = max(1, preparation.config.ray.workers)
    print(
        f"  estimate: explaining {spec.n_samples} samples takes about {seconds:.2g} s on one worker like this "
        f"machine ({seconds / workers:.2g} s over {workers} worker(s); timed on one batch of {size}; "
        "Ray start, metrics and the report come on top)"
    )
    print(
        "  checked: files, model and weights, composite, one sample explained"
        + (f", layerwise {list(spec.layerwise)}" if spec.layerwise else "")
        + (f", CRP at {cfg.storage.crp.layer}" if cfg.storage.crp else "")
    )
    return 0


def add_parsers(sub: Any) -> None:
    run = sub.add_parser("run", help="run (or resume) the audit a YAML config describes")
    run.add_argument("config")
    run.add_argument("--fresh", action="store_true", help="wipe an existing store instead of resuming it")
    run.add_argument("--output", help="override the config's output location")
    run.add_argument("--workers", type=int, help="override ray.workers (>= 1)")
    run.add_argument("--ray-address", help="run on an existing Ray cluster (e.g. ray://head:10001)")
    run.add_argument("--no-progress", action="store_true", help="no progress display on stderr")
    run.add_argument(
        "--ray-dashboard", action="store_true", help="start Ray's dashboard (127.0.0.1 only) with a private local Ray"
    )
    run.add_argument("--compare-with", help="an earlier audit directory to compare the result with")
    run.set_defaults(func=cmd_run)
    validate = sub.add_parser(
        "validate", help="make every check `run` makes (files, model, one sample explained) without running"
    )
    validate.add_argument("config")
    validate.set_defaults(func=cmd_validate)
