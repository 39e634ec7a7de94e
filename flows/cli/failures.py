"""How ``lrp-audit`` ends when something fails: one line on stderr and a documented exit status; the
full traceback goes to a log file, never to the terminal.

Exit statuses (README "Exit statuses"): 0 success; 1 the command failed (a failed shard, a store
that refuses, a Ray cluster that cannot be reached, an unexpected error); 2 an invalid config or
command line; 130 / 143 interrupted (Ctrl-C / SIGTERM); 141 stdout was closed early (``| head``).

The log file is ``$LRP_AUDIT_LOG_DIR/lrp-audit-<time>-<pid>.log`` (default directory
``$XDG_CACHE_HOME/lrp-audit/logs``, i.e. ``~/.cache/lrp-audit/logs``); it is created only when there
is something to put in it. ``LRP_AUDIT_TRACEBACK=1`` prints tracebacks on the terminal as well."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

LOG_DIR_ENV = "LRP_AUDIT_LOG_DIR"
TRACEBACK_ENV = "LRP_AUDIT_TRACEBACK"
EXIT_FAILED, EXIT_INVALID, EXIT_PIPE_CLOSED = 1, 2, 141
ENGINE_LOGGERS = ("prefect.flow_runs", "prefect.task_runs", "prefect.flow_engine", "prefect.task_engine")
"""Prefect loggers whose error records (the failed task/flow run, with its traceback) the command's
own last line replaces on the terminal."""

log = logging.getLogger("lrp_audit.cli")
_handler: logging.FileHandler | None = None


def log_path() -> Path:
    """This command's log file (created lazily, on the first record)."""
    if _handler is not None:
        return Path(_handler.baseFilename)
    base = os.environ.get(LOG_DIR_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lrp-audit", "logs"
    )
    return Path(base) / f"lrp-audit-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


def open_log() -> logging.FileHandler | None:
    """Attach the log file to the root logger (every record with its traceback); None if it cannot be made."""
    global _handler
    if _handler is not None:
        return _handler
    path = log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    except OSError:
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    logging.getLogger().addHandler(handler)
    _handler = handler
    return handler


def show_tracebacks() -> bool:
    return os.environ.get(TRACEBACK_ENV, "").strip().lower() in ("1", "true", "yes")


class _NoEngineErrors(logging.Filter):
    """Keeps Prefect's failed-run records and every traceback off the terminal (the log file has them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info is not None and record.exc_info != (None, None, None):
            return False
        return not (record.levelno >= logging.ERROR and record.name.startswith(ENGINE_LOGGERS))


def quiet_console() -> None:
    """Filter every stream handler on stderr (Prefect's console handlers, set up when Prefect is
    imported): call after importing Prefect. A no-op with ``LRP_AUDIT_TRACEBACK=1``."""
    if show_tracebacks():
        return
    open_log()
    loggers = [logging.getLogger()] + [
        obj for obj in logging.Logger.manager.loggerDict.values() if isinstance(obj, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                if not any(isinstance(f, _NoEngineErrors) for f in handler.filters):
                    handler.addFilter(_NoEngineErrors())


def fail(message: str, exc: BaseException, status: int = EXIT_FAILED) -> int:
    """Print `message` as one ``lrp-audit:`` line (the traceback to the log file), return `status`."""
    import traceback

    if show_tracebacks():
        traceback.print_exception(exc, file=sys.stderr)
    elif _handler is not None:  # a run's log: its records, then the final error
        log.error("%s", message, exc_info=exc)
        message += f" (details: {log_path()})"
    else:
        path = log_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(f"lrp-audit: {message}\n" + "".join(traceback.format_exception(exc)))
            message += f" (details: {path})"
        except OSError:
            pass
    print(f"lrp-audit: {message}", file=sys.stderr)
    return status


def pipe_closed() -> int:
    """stdout's reader went away (``lrp-audit summary | head``): end quietly. Later writes, such as
    the interpreter's final flush, go to /dev/null."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_PIPE_CLOSED
