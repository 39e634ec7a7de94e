"""``lrp-audit spray AUDIT``: SpRAy (spectral relevance analysis) over an audit's committed samples.

    lrp-audit spray audits/planted                          # every class, k from the eigengap
    lrp-audit spray audits/planted --classes 3,5 --k 4      # two classes, 4 clusters each
    lrp-audit spray audits/planted --by label --recompute   # group by label, replace older results

Settings not given on the command line come from the audit's ``analysis.spray`` config section (or the
defaults); results go to ``AUDIT/analysis/spray/``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from flows.cli.environment import quiet_defaults


def _classes(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--classes takes comma-separated class numbers, got {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"--classes takes non-negative class numbers, got {text!r}")
    return values


def _k(text: str) -> str | int:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--k is 'auto' or a number of clusters >= 2, got {text!r}") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"--k is 'auto' or a number of clusters >= 2, got {value}")
    return value


def cmd_spray(args: argparse.Namespace) -> int:
    quiet_defaults()
    from pydantic import ValidationError

    from flows.spray import SprayFailedError, audit_ray_spec, audit_spray_spec, spray
    from lrp_tasks.analysis import SprayRequestError, SpraySpec, SprayStoreError, plan_spray
    from lrp_tasks.store import AuditStoreError

    try:
        base = audit_spray_spec(args.audit)
        updates: dict[str, Any] = {}
        for key in ("classes", "by", "k"):
            if getattr(args, key) is not None:
                updates[key] = getattr(args, key)
        spec = SpraySpec.model_validate({**base.model_dump(mode="json"), **updates})
        ray_spec = audit_ray_spec(args.audit)
        on_change = "recompute" if args.recompute else "refuse"
        if args.ray_address:
            ray_spec = ray_spec.model_copy(update={"address": args.ray_address})
        # bad requests (unknown class, k too large, no shards, another config) fail here, before a
        # Prefect server or Ray starts; planning again inside the flow is idempotent
        plan_spray(args.audit, spec, on_change)
        result = spray(
            audit_path=args.audit,
            spec=spec,
            on_change=on_change,
            ray=ray_spec,
            use_ray=not args.no_ray,
        )
    except (SprayRequestError, SprayStoreError, SprayFailedError, AuditStoreError, ValidationError) as exc:
        print(f"lrp-audit spray: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, default=str))
    return 0


def add_parser(subparsers: Any) -> None:
    spray = subparsers.add_parser(
        "spray",
        help="SpRAy: cluster each class's relevance maps to find the model's strategies",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    spray.add_argument("audit", help="audit directory")
    spray.add_argument("--classes", type=_classes, help="comma-separated classes (default: every class)")
    spray.add_argument("--by", choices=["predicted", "label"], help="group samples by predicted class or label")
    spray.add_argument("--k", type=_k, help="'auto' (eigengap) or a number of clusters")
    spray.add_argument("--recompute", action="store_true", help="replace results of another config (of --classes only)")
    spray.add_argument("--no-ray", action="store_true", help="run the classes one by one in this process")
    spray.add_argument("--ray-address", help="run on an existing Ray cluster (e.g. ray://head:10001)")
    spray.set_defaults(func=cmd_spray)
