"""``lrp-audit verify AUDIT [--repair]``: check every committed shard of an audit store against its
commit records; ``--repair`` un-commits the damaged ones so that the next ``lrp-audit run`` redoes them.

Exit status: 0 when the store is sound (or was repaired), 1 when damage remains, 2 on bad usage."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    verify = subparsers.add_parser(
        "verify",
        help="check an audit store's committed shards (chunks, Parquet parts, row counts, checksums)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument("audit", help="the audit directory")
    verify.add_argument(
        "--repair", action="store_true", help="un-commit damaged shards (the next run redoes them); takes the lock"
    )
    verify.add_argument(
        "--quick",
        action="store_true",
        help="only presence and sizes of parts and chunks (what `run` checks), without reading them",
    )
    verify.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    from lrp_tasks.store.verify import check_committed_shards, repair_store

    deep = not args.quick
    if args.repair:
        report, removed = repair_store(args.audit, deep=deep)
    else:
        report, removed = check_committed_shards(args.audit, deep=deep), []
    print(
        f"audit store {report.path}: {report.shards} shard(s) planned, {len(report.committed)} committed, "
        f"checked {'deeply (read, decoded, checksums)' if deep else 'quickly (presence and sizes)'}"
    )
    for sid, problems in sorted(report.damaged.items()):
        for problem in problems:
            print(f"  shard {sid}: DAMAGED: {problem}")
    for problem in report.store_problems:
        print(f"  PROBLEM: {problem}")
    for note in report.notes:
        print(f"  note: {note}")
    damaged = sorted(report.damaged)
    if args.repair:
        if damaged:
            print(f"un-committed {len(damaged)} damaged shard(s) {damaged}: the next `lrp-audit run` redoes them")
        if removed:
            print(f"removed: {', '.join(removed)}")
        return 1 if report.store_problems else 0
    if report.ok:
        print(f"ok: {len(report.committed)} committed shard(s) sound")
        return 0
    if damaged:
        print(
            f"{len(damaged)} damaged shard(s) {damaged}: `lrp-audit verify {args.audit} --repair` un-commits them, "
            "then `lrp-audit run` redoes them"
        )
    return 1
