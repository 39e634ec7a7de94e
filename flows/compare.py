"""``compare_with`` of the audit flow: which store a run writes, and which earlier audit it compares with.

- ``compare_with=None``: the run writes the config's ``output`` (resumed night after night), no comparison.
- ``compare_with="<path>"``: as above, then compared with the audit at that path.
- ``compare_with="previous"`` (the nightly deployment): every flow run writes its own store,
  ``<output>/runs/<flow run id>`` (a retry of the same flow run resumes it), and is compared with the
  store of the last flow run of the same deployment *and the same config* that ended COMPLETED, found
  through the Prefect API: each such run is tagged ``lrp-audit-config:<key>``, the key a digest of the
  config's audit digest and its output, so an ad-hoc run of the deployment with another config
  (``--param config_path=...``) is never "the previous run" of the nightly one. Old run directories
  are kept until deleted by hand (docs/deployment.md).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from lrp_tasks.audit.identity import audit_digest
from lrp_tasks.config import AuditConfig

PREVIOUS = "previous"
RUNS_DIR = "runs"
TAG_PREFIX = "lrp-audit-config:"


class CompareWithError(ValueError):
    """``compare_with`` cannot be honoured (e.g. ``previous`` outside a deployment)."""


@dataclass(frozen=True)
class ComparePlan:
    output: str  # the store this run writes
    against: str | None  # the audit to compare with (None: nothing to compare)
    note: str  # one line for the artifact and the logs


def run_store(base: str, flow_run_id: str) -> str:
    """The store of one flow run under a deployment's ``output``."""
    return os.path.join(base, RUNS_DIR, str(flow_run_id))


def config_tag(cfg: AuditConfig, output: str) -> str:
    """The flow-run tag of an audit's config: its audit digest and the output its runs go under."""
    key = hashlib.sha256(f"{audit_digest(cfg)}\n{os.path.abspath(output)}".encode()).hexdigest()[:16]
    return TAG_PREFIX + key


def tag_flow_run(run_id: str, tag: str) -> None:
    """Add ``tag`` to the flow run (kept with its other tags), so later runs can find it."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        tags = list(client.read_flow_run(run_id).tags or [])
        if tag not in tags:
            client.update_flow_run(run_id, tags=[*tags, tag])


def previous_completed_run(deployment_id: str, current_run_id: str | None, tag: str | None = None) -> str | None:
    """Id of the last flow run of the deployment that ended COMPLETED (excluding the current one),
    among the runs carrying ``tag`` when given."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    runs_filter = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED])))
    if current_run_id:
        runs_filter.id = FlowRunFilterId(not_any_=[current_run_id])
    if tag:
        runs_filter.tags = FlowRunFilterTags(all_=[tag])
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=runs_filter,
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            sort=FlowRunSort.END_TIME_DESC,
            limit=1,
        )
    return str(runs[0].id) if runs else None


def plan_comparison(compare_with: str | None, output: str, cfg: AuditConfig | None = None) -> ComparePlan:
    """Where this run writes and what it compares with, from the flow's runtime context (``cfg``: the
    run's config, which ``previous`` must match)."""
    if not compare_with:
        return ComparePlan(output, None, "")
    if compare_with != PREVIOUS:
        if not os.path.isdir(compare_with):
            raise CompareWithError(f"compare_with: no audit directory at {compare_with!r}")
        return ComparePlan(output, compare_with, f"compared with {compare_with}")
    from prefect.runtime import deployment, flow_run

    deployment_id, run_id = deployment.id, flow_run.id
    if not deployment_id or not run_id:
        raise CompareWithError(
            "compare_with='previous' compares with the last successful run of the same deployment, but this "
            "run belongs to no deployment; give the path of an audit to compare with instead"
        )
    here = run_store(output, run_id)
    tag = config_tag(cfg, output) if cfg is not None else None
    if tag is not None:
        tag_flow_run(str(run_id), tag)
    previous = previous_completed_run(str(deployment_id), str(run_id), tag)
    if previous is None:
        return ComparePlan(
            here, None, "first successful run of this deployment with this config: nothing to compare with yet"
        )
    there = run_store(output, previous)
    if not os.path.isdir(there):
        return ComparePlan(here, None, f"the previous run's store {there} is gone: nothing to compare with")
    return ComparePlan(here, there, f"compared with the previous successful run {previous} ({there})")
