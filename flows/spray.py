"""The ``spray`` flow: SpRAy over the classes of an audit, the classes in parallel as Ray tasks on the
audit's Ray (its configured cluster, or a private local Ray), finished with a markdown artifact.

Run it from the command line (``lrp-audit spray audits/planted``), from Python
(``spray(audit_path="audits/planted")``), or let the audit flow run it after the last shard commits
(``analysis: {spray: {...}}`` in the audit config)."""

from __future__ import annotations

import functools
import time
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows.progress import stage
from lrp_tasks.analysis import SprayPlan, SpraySpec, plan_spray, spray_class
from lrp_tasks.cluster.pool import map_on_ray
from lrp_tasks.config import AuditConfig, RaySpec
from lrp_tasks.store import open_audit


class SprayFailedError(RuntimeError):
    """Some classes failed; the others are written."""


def audit_ray_spec(audit_path: str) -> RaySpec:
    """The Ray settings recorded with the audit (its pool), or a local default."""
    recorded = open_audit(audit_path).config.get("ray")
    return RaySpec.model_validate(recorded) if recorded else RaySpec()


def audit_spray_spec(audit_path: str) -> SpraySpec:
    """The ``analysis.spray`` section recorded with the audit, or the defaults."""
    analysis = open_audit(audit_path).config.get("analysis") or {}
    return SpraySpec.model_validate(analysis.get("spray") or {})


@task(name="plan-spray")
def plan(audit_path: str, spec: SpraySpec, on_change: str) -> SprayPlan:
    return plan_spray(audit_path, spec, on_change)


@task(name="spray-classes-on-ray")
def run_classes(the_plan: SprayPlan, ray_spec: RaySpec | None) -> list[dict[str, Any]]:
    logger = get_run_logger()
    if not the_plan.classes:
        return []
    n = len(the_plan.classes)
    if ray_spec is None:  # in this process, one class after the other
        outcomes = []
        for i, c in enumerate(the_plan.classes, 1):
            outcomes.append(spray_class(the_plan, c))
            stage(f"SpRAy: class {c} done ({i} of {n}, {outcomes[-1]['seconds']:.1f} s)")
        return outcomes
    logger.info("SpRAy on %d class(es) as Ray tasks", n)
    stage(f"SpRAy: {n} class(es) as Ray tasks {the_plan.classes}")
    began = time.perf_counter()
    done, failed = map_on_ray(ray_spec, functools.partial(spray_class, the_plan), the_plan.classes)
    stage(f"SpRAy: {len(done)} of {n} class(es) done in {time.perf_counter() - began:.1f} s")
    if failed:
        detail = "; ".join(f"class {c}: {cause}" for c, cause in sorted(failed.items()))
        raise SprayFailedError(f"SpRAy failed for {len(failed)} class(es) ({detail}); the others are written")
    return done


def markdown(audit_path: str, outcomes: list[dict[str, Any]], skipped: list[int]) -> str:
    lines = [
        f"# SpRAy: {audit_path}",
        "",
        "| class | samples | k | eigengap k | top cluster | its size | its score |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for o in sorted(outcomes, key=lambda o: o["class"]):
        lines.append(
            f"| {o['class']} | {o['samples']} | {o['k']} | {o['eigengap_k']} | {o['top_cluster']} | "
            f"{o['top_cluster_size']} | {o['top_cluster_score']:.3f} |"
        )
    if skipped:
        lines += ["", f"Already done with this config (skipped): {skipped}"]
    lines += ["", f"Results: `{audit_path}/analysis/spray/` (`lrp_tasks.analysis.read_spray`)."]
    return "\n".join(lines)


@flow(name="spray", log_prints=True)
def spray(
    audit_path: str,
    spec: SpraySpec | None = None,
    on_change: Literal["refuse", "recompute"] = "refuse",
    ray: RaySpec | None = None,
    use_ray: bool = True,
) -> dict[str, Any]:
    """SpRAy per class of the audit at ``audit_path``.

    spec: SpRAy settings (default: the audit's ``analysis.spray`` section, else the defaults);
    on_change: what to do with results of another config or audit snapshot (refuse, or recompute);
    ray: where the classes run (default: the audit's recorded Ray settings); use_ray: False runs the
    classes one after the other in this process."""
    spec = spec if spec is not None else audit_spray_spec(audit_path)
    the_plan = plan(audit_path, spec, on_change)
    for note in the_plan.notes:
        print(note)
    ray_spec = (ray if ray is not None else audit_ray_spec(audit_path)) if use_ray else None
    outcomes = run_classes(the_plan, ray_spec)
    create_markdown_artifact(markdown(audit_path, outcomes, the_plan.done), key="spray")
    return {
        "audit": audit_path,
        "classes_run": outcomes,
        "classes_skipped": the_plan.done,
        "notes": the_plan.notes,
        "results": f"{audit_path}/analysis/spray",
    }


def spray_after_audit(cfg: AuditConfig) -> dict[str, Any] | None:
    """The audit flow's last step: SpRAy as configured in ``analysis.spray`` (None when not set).

    Results of another SpRAy config or of an earlier snapshot of the audit are recomputed: the audit's
    config is the truth for a scheduled run."""
    analysis = getattr(cfg, "analysis", None)
    if analysis is None or analysis.spray is None:
        return None
    return spray(audit_path=cfg.output, spec=analysis.spray, on_change="recompute", ray=cfg.ray)
