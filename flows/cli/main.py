"""``lrp-audit``: run an audit, inspect its results, validate a config.

    lrp-audit run conf/demo.yaml            # local Ray + a temporary local Prefect, nothing to start
    lrp-audit summary audits/demo           # the per-audit table, read back from Parquet
    lrp-audit validate conf/demo.yaml       # every check `run` makes (files, model, one sample), no run
    lrp-audit verify audits/demo            # check a store's committed shards (--repair un-commits damaged)

Relative paths in a config resolve against the config file's directory; paths typed on the
command line (--output) against the working directory.
"""

from __future__ import annotations

import argparse
import errno
import sys
from importlib.metadata import PackageNotFoundError, version

from flows.cli import export, failures, report, run, spray, summary, verify
from flows.interrupt import RunInterrupted
from lrp_tasks.config import ConfigError


def package_version() -> str:
    try:
        return version("lrp-audit")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lrp-audit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    run.add_parsers(sub)
    summary.add_parser(sub)
    report.add_parser(sub)
    verify.add_parser(sub)
    spray.add_parser(sub)
    export.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; every failure ends in one ``lrp-audit:`` line and an exit status
    (``flows.cli.failures``: 1 failed, 2 invalid config, 130/143 interrupted, 141 closed pipe)."""
    args = build_parser().parse_args(argv)
    try:
        status = args.func(args)
        sys.stdout.flush()  # a closed pipe surfaces here, not in the interpreter's last flush
        return status
    except BrokenPipeError:
        return failures.pipe_closed()
    except RunInterrupted as exc:
        print(
            f"\nlrp-audit: {exc}; stopped every process of the run. Committed shards are kept: "
            "run the same command again to resume.",
            file=sys.stderr,
        )
        return exc.exit_code
    except KeyboardInterrupt as exc:  # a command other than run (run turns it into RunInterrupted)
        return failures.fail("interrupted", exc, 130)
    except ConfigError as exc:
        print(f"lrp-audit: invalid configuration\n{exc}", file=sys.stderr)
        return failures.EXIT_INVALID
    except Exception as exc:  # one readable line instead of a traceback (which goes to the log file)
        return failures.fail(_describe(args, exc), exc)


_DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)
"""Errors of the disk, not of the program: one line naming the file, no "unexpected"."""


def _describe(args: argparse.Namespace, exc: Exception) -> str:
    """The failure's one line: the message of an expected error, the type and message of any other."""
    from lrp_tasks.cluster.pool import ClusterConnectionError, ClusterResourceError, ShardsFailedError, WorkerStartError
    from lrp_tasks.store import AuditStoreError

    expected = ShardsFailedError | ClusterConnectionError | ClusterResourceError | WorkerStartError | AuditStoreError
    if isinstance(exc, expected | FileNotFoundError) or report.is_user_error(args, exc):
        text = str(exc)
    elif isinstance(exc, OSError) and exc.errno in _DISK_ERRORS:
        where = f" {exc.filename}" if exc.filename else ""
        text = f"could not write{where}: {exc.strerror}; what was written before is kept"
    else:
        text = f"unexpected error: {type(exc).__name__}: {exc}"
    return text.strip() or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
