"""The ``audit`` flow: plan shards, create or reopen the store, skip committed shards, fan the rest
out to Ray workers, and finish with a markdown artifact and a small result.

Run it from the command line (``lrp-audit run conf/demo.yaml``), from Python
(``audit(config_path="conf/demo.yaml")``) or as the ``audit/nightly-digits`` deployment."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact

from flows.compare import ComparePlan, plan_comparison
from flows.progress import Progress, stage
from flows.spray import spray_after_audit
from lrp_tasks.audit.prepare import PreparedAudit, prepare_audit, resolve_audit
from lrp_tasks.audit.run import run_shards
from lrp_tasks.audit.sanity import run_efficient_mprt
from lrp_tasks.config import AuditConfig, config_dir, load_config
from lrp_tasks.config.roots import check_under_roots
from lrp_tasks.report import AuditsNotComparableError, write_report
from lrp_tasks.report.markdown import audit_statistics, compare_into_store, faithfulness_markdown, markdown_report
from lrp_tasks.report.tables import per_class_table
from lrp_tasks.store import AuditStoreError, lock_store, open_audit
from lrp_tasks.store.lock import describe

PREPARE_HOOK = "LRP_AUDIT_TEST_PREPARE_SECONDS"
"""Test hook: store preparation lasts this much longer (after the store exists), so a test can
interrupt a run there."""
TIMING_KEYS = (
    "samples_explained",
    "samples_per_second",
    "samples_per_second_running",
    "startup_seconds",
    "seconds",
    "nodes",
)


_FROM_CONFIG_FILE: ContextVar[bool] = ContextVar("lrp_audit_config_from_file", default=False)
"""Set by the command line around its call of the flow: its typed ``config`` was read from a file on
this machine. Not a flow parameter, so a form submitted over the Prefect API can never set it."""


@contextlib.contextmanager
def config_from_file() -> Iterator[None]:
    """Within: the flow's typed ``config`` comes from a file on this machine (the command line), so its
    builder is trusted code like the file (``config_path``); otherwise a typed ``config`` gets the allowlist."""
    token = _FROM_CONFIG_FILE.set(True)
    try:
        yield
    finally:
        _FROM_CONFIG_FILE.reset(token)


def trusted_code(config: AuditConfig | None) -> bool:
    """Whether the run's builder may be any module (a config file on the worker) or only the allowlist
    (``lrp_tasks.sources.builders``: the typed form, anyone with access to the Prefect API)."""
    return config is None or _FROM_CONFIG_FILE.get()


def audit_parameters(
    config: AuditConfig | None, config_path: str | None, base_dir: str | None = None
) -> tuple[AuditConfig, Path, str, list[str]]:
    """The flow's parameters as (config, the directory its relative paths resolve against, how
    errors name it, notes to log). A typed ``config`` wins over ``config_path`` (a deployment's
    default path must not block a run started from the UI's form)."""
    notes = []
    if config is not None:
        if config_path is not None:
            notes.append(f"both config and config_path given: running the config parameter, ignoring {config_path}")
        root = Path(base_dir) if base_dir else Path.cwd()
        return config, root.absolute(), f"flow parameter config (audit {config.name!r})", notes
    if config_path is None:
        raise ValueError("give the audit as config (the typed form) or config_path (a YAML file)")
    root = Path(base_dir).absolute() if base_dir else config_dir(config_path)
    return load_config(config_path), root, config_path, notes


@task(name="prepare-store")
def prepare_store(cfg: AuditConfig, root: Path, source: str, fresh: bool, trusted: bool = True) -> dict[str, Any]:
    """Run every check of the audit, loading the model once in the driver (errors surface before any
    worker starts; the command line's pre-flight hands over the model it loaded), and create or
    reopen the store."""
    mode = "overwrite" if fresh else "resume"
    preparation = prepare_audit(cfg, root=root, source=source, store_mode=mode, trusted_code=trusted)
    store = preparation.store
    assert store is not None
    time.sleep(float(os.environ.get(PREPARE_HOOK, "0")))
    try:
        # committed shards whose files are damaged (checked cheaply: presence, sizes) are redone
        redone = store.redo_damaged(deep=False)
        if redone:
            get_run_logger().warning(
                "redoing %s damaged shard(s): %s",
                len(redone),
                "; ".join(f"shard {sid}: {', '.join(why)}" for sid, why in sorted(redone.items())),
            )
        return {
            "audit": preparation.audit,
            "plan": store.plan,
            "pending": store.pending_shards(),
            "audit_id": store.audit_id,
            "n_samples": preparation.spec.n_samples,
            "composite": preparation.spec.composite,
            "redone": sorted(redone),
        }
    finally:
        store.close()


@task(name="explain-shards-on-ray")
def explain_on_ray(
    audit: PreparedAudit, pending: list[tuple[int, int, int]], total: int, lease: str | None = None
) -> dict[str, Any]:
    """One Prefect task drives a Ray actor pool; progress goes to the logs and a progress artifact."""
    logger = get_run_logger()
    progress = Progress(total_shards=total, done_shards=total - len(pending))
    artifact = create_progress_artifact(progress.percent, key="audit-progress", description="shards committed")

    def on_done(outcome: Any, raw: dict[str, Any]) -> None:
        progress.shard_done(outcome.samples, outcome.seconds, raw.get("started_at"))
        update_progress_artifact(artifact, progress.percent)
        logger.info("shard %s committed by %s: %s", outcome.shard_id, outcome.worker, progress.line())

    began = time.perf_counter()
    outcomes = run_shards(audit, pending, on_done=on_done, on_note=logger.warning, lease=lease)
    seconds = time.perf_counter() - began
    # counted from the store: a late shard committed by a worker that was then replaced is returned by
    # no worker (its retry finds it committed), yet its samples were explained in this run
    committed = open_audit(audit.config.output).committed_shards
    explained = sum(stop - start for sid, start, stop in pending if sid in committed)
    return {
        "seconds": seconds,
        "samples_explained": explained,
        "samples_per_second": explained / seconds if seconds > 0 and explained else 0.0,
        # start-up = Ray start and the workers' model loads, until the first shard began
        "samples_per_second_running": progress.running_samples_per_second,
        "startup_seconds": progress.startup_seconds or 0.0,
        "nodes": sorted({o.get("node", "") for o in outcomes}),
        "shards_run": [o["shard_id"] for o in outcomes if o["explained"]],
    }


@task(name="report")
def report(cfg: AuditConfig, timing: dict[str, Any], plan: ComparePlan | None = None) -> dict[str, Any]:
    audit_dir = open_audit(cfg.output)
    stats = audit_statistics(audit_dir.summaries)
    kept = ("seconds", "samples_explained", "samples_per_second", "samples_per_second_running", "startup_seconds")
    shown = {k: v for k, v in timing.items() if k in kept}
    changed, note = None, plan.note if plan else ""
    if plan and plan.against:
        try:
            changed = compare_into_store(audit_dir, plan.against)
        except (AuditsNotComparableError, AuditStoreError) as exc:  # the audit itself stands
            get_run_logger().warning("no comparison with %s: %s", plan.against, exc)
            note = f"could not compare with {plan.against}: {exc}"
    html_path = write_report(audit_dir)
    per_class = per_class_table(audit_dir.summaries, audit_dir.class_names)
    text = markdown_report(cfg.name, cfg.output, stats, shown, per_class, html_path, changed, note)
    text += faithfulness_markdown(audit_dir.summaries, audit_dir.attrs)
    create_markdown_artifact(text, key=f"audit-{_key(cfg.name)}")
    return {**stats, "report": html_path, **({"comparison": changed} if changed else {})}


@task(name="sanity-check")
def sanity_check(cfg: AuditConfig, trusted: bool = True) -> dict[str, Any] | None:
    """Efficient MPRT on a sample subset, recorded in the store attributes (metrics.efficient_mprt)."""
    return run_efficient_mprt(cfg, trusted_code=trusted)


def _key(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower())


@flow(name="audit", log_prints=True)
def audit(
    config: AuditConfig | None = None,
    config_path: str | None = None,
    fresh: bool = False,
    compare_with: str | None = None,
    base_dir: str | None = None,
) -> dict[str, Any]:
    """Explain every sample of the configured dataset and keep the results.

    Args:
        config: The audit, field by field. When given it is run, and config_path is ignored.
        config_path: A YAML audit file (relative: to the run's working directory, the project
            directory in a deployment); its relative paths resolve against its own directory.
        fresh: Wipe an existing store instead of resuming it.
        compare_with: "previous" (each run of a deployment writes <output>/runs/<flow run id> and
            is compared with the last successful run of the same deployment and config) or the
            path of an audit to compare with.
        base_dir: The directory relative paths of the audit resolve against (default: the config
            file's directory, or the working directory for the config form).
    """
    cfg, root, source, notes = audit_parameters(config, config_path, base_dir)
    trusted = trusted_code(config)  # a form's builder: the allowlist only, refused before anything is written
    if not trusted:  # the form's paths: under the allowed roots, checked before anything is written
        compared = None if compare_with == "previous" else compare_with
        check_under_roots(cfg, root, base_dir=base_dir, compare_with=compared)
    for note in notes:
        get_run_logger().warning(note)
    # the output's one resolution before the store is prepared: the lock and the comparison need it
    output = resolve_audit(cfg, root).output
    plan = plan_comparison(compare_with, output, cfg)
    cfg = cfg.model_copy(update={"output": plan.output})
    phases = {"flow_start": time.perf_counter()}  # where a run's fixed start cost goes (benchmarks/pipeline.py)
    # Every check before the lock: a refused run (a form's wrong relative path, a bad model) writes
    # nothing, not even the lock. The preparation is kept for prepare_store (the model loads once).
    prepare_audit(cfg, root=root, source=source, keep=True, trusted_code=trusted)
    # One run writes a store at a time: the lock is held until the flow ends (the kernel drops it if the
    # process dies); workers carry its token and check it before every commit.
    with lock_store(plan.output) as lock:
        if lock.previous is not None:
            get_run_logger().warning(
                "took over the store lock from %s, which ended without releasing it", describe(lock.previous)
            )
        prepared = prepare_store(cfg, root, source, fresh, trusted)
        phases["prepare_store"] = time.perf_counter()
        cfg = prepared["audit"].config  # paths resolved once, in the preparation
        total = len(prepared["plan"])
        timing = explain_on_ray(prepared["audit"], prepared["pending"], total, lease=lock.token)
        phases["explain"] = time.perf_counter()
        if cfg.metrics.efficient_mprt is not None:
            stage(f"eMPRT sanity check: {cfg.metrics.efficient_mprt.samples} samples, trained vs randomised model")
            sanity_check(cfg, trusted)
        phases["sanity_check"] = time.perf_counter()
        stage("writing the report (statistics, heatmaps, report.html)")
        stats = report(cfg, timing, plan)
        phases["report"] = time.perf_counter()
        stage(f"report written in {phases['report'] - phases['sanity_check']:.1f} s")
        analysis = spray_after_audit(cfg)  # after the last shard commits; None without analysis.spray
        phases["spray"] = time.perf_counter()
    marks = list(phases.values())
    phase_seconds = {name: b - a for name, a, b in zip(list(phases)[1:], marks[:-1], marks[1:], strict=True)}
    phase_seconds["ray_start_and_model_loads"] = timing.get("startup_seconds", 0.0)
    return {
        "phase_seconds": phase_seconds,
        "audit": cfg.name,
        "store": cfg.output,
        "audit_id": prepared["audit_id"],
        "shards": total,
        "shards_skipped": total - len(prepared["pending"]),
        "shards_redone": prepared["redone"],
        **{k: timing[k] for k in TIMING_KEYS},
        **stats,
        **({"spray": analysis} if analysis is not None else {}),
    }
