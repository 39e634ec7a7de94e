"""Upper bounds of the config's resource and size fields: one table, checked when a config is
validated (so ``lrp-audit validate``, the CLI run and the deployment's form refuse a value beyond it
in one line naming the field), and shown as the JSON schema's ``maximum`` in the Prefect UI form.

Each bound is far above any real audit and far below what would exhaust a cluster or overflow an
index: a typo (``workers: 1000000``) or a hostile form submission is refused before anything starts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from .base import invalid


@dataclass(frozen=True)
class Limit:
    bound: int | float
    why: str


LIMITS: dict[str, Limit] = {
    "ray.workers": Limit(4096, "Ray actors of one audit; a cluster of 4,096 workers is beyond any audit"),
    "ray.cpus_per_worker": Limit(1024, "CPUs reserved by one actor; no machine has more"),
    "ray.gpus_per_worker": Limit(64, "GPUs reserved by one actor; no machine has more"),
    "shard_size": Limit(1_048_576, "samples committed at once; a shard is held in a worker's memory"),
    "batch_size": Limit(65_536, "samples per forward/backward pass"),
    "retries": Limit(100, "retries of one shard before the audit fails"),
    "dataset.repeat": Limit(100_000, "copies of the digits split (benchmarks): 179.7 million samples at most"),
    "metrics.batch_size": Limit(1_048_576, "perturbed inputs per forward pass"),
}
"""Field (dotted, as errors name it) → its bound and why."""


def _at_most(field: str) -> AfterValidator:
    limit = LIMITS[field]

    def check(value: Any) -> Any:
        if value is not None and value > limit.bound:
            raise invalid("too_large", f"{value} is more than {limit.bound:,} ({limit.why}; docs/config.md, Bounds)")
        return value

    return AfterValidator(check)


def capped(type_: Any, field: str) -> Any:
    """``type_`` with the bound of `field`: the check and the schema's maximum."""
    return Annotated[type_, _at_most(field), Field(json_schema_extra={"maximum": LIMITS[field].bound})]
