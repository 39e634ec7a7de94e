"""``lrp-audit verify AUDIT [--repair]``: check every committed shard of an audit store against its
commit records; ``--repair`` un-commits the damaged ones so that the next ``lrp-audit run`` redoes them.
The deep check also reads the dataset again and compares it with the inputs the audit kept
(``storage.keep_input``): a dataset changed since the audit makes the store unsound (``--no-inputs`` skips
this; ``--repair`` cannot fix it: the audit must be run again with ``--fresh``).

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
    verify.add_argument(
        "--no-inputs",
        action="store_true",
        help="do not compare the kept inputs with the dataset (the deep check reads the whole dataset)",
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
    inputs_ok = _compare_inputs(args) if deep and not args.no_inputs else True
    damaged = sorted(report.damaged)
    if args.repair:
        if damaged:
            print(f"un-committed {len(damaged)} damaged shard(s) {damaged}: the next `lrp-audit run` redoes them")
        if removed:
            print(f"removed: {', '.join(removed)}")
        return 1 if report.store_problems or not inputs_ok else 0
    if report.ok and inputs_ok:
        print(f"ok: {len(report.committed)} committed shard(s) sound")
        return 0
    if damaged:
        print(
            f"{len(damaged)} damaged shard(s) {damaged}: `lrp-audit verify {args.audit} --repair` un-commits them, "
            "then `lrp-audit run` redoes them"
        )
    return 1


def _compare_inputs(args: argparse.Namespace) -> bool:
    """Print what comparing the kept inputs with the dataset found; False when they differ."""
    from lrp_tasks.audit.kept_inputs import compare_kept_inputs

    found = compare_kept_inputs(args.audit)
    if found.skipped:
        print(f"  note: kept inputs not compared with the dataset: {found.skipped}")
        return True
    if found.ok:
        print(f"  inputs: {found.compared} kept sample(s) equal to {found.dataset} as it is now")
        return True
    if found.size_change:
        print(f"  DATASET CHANGED: {found.dataset}: {found.size_change}")
    for sid, sample in sorted(found.differing.items()):
        print(f"  shard {sid}: DATASET CHANGED: sample {sample} of {found.dataset} differs from the input explained")
    print(
        f"the audit was made from other data than {found.dataset} holds now: run it again with "
        "`lrp-audit run CONFIG --fresh` (or restore the data); --repair cannot fix this"
    )
    return False
