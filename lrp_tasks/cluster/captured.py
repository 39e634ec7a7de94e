"""The process's stderr (file descriptor 2) captured while Ray joins a cluster.

Ray's C++ client logs a line per retry straight to fd 2 when it cannot join (``Failed to get cluster
ID from GCS server: Unauthenticated ...``, once a second for 20 s): the user should see one line
naming the cause instead. What was captured is written back to stderr when the join succeeds, and
handed to the caller when it fails (the command line puts it in its log file)."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator


class Captured:
    """The text written to fd 2 inside :func:`captured_stderr` (empty until it ends)."""

    text: str = ""


@contextlib.contextmanager
def captured_stderr(out: Captured | None = None) -> Iterator[Captured]:
    """Send fd 2 to a temporary file for the block; when the block succeeds write it back, when it
    raises keep it in ``out`` (also yielded) only."""
    out = out if out is not None else Captured()
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 to redirect
        yield out
        return
    with tempfile.TemporaryFile(mode="w+b") as spool:
        sys.stderr.flush()
        os.dup2(spool.fileno(), 2)
        failed = True
        try:
            yield out
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            spool.seek(0)
            out.text = spool.read().decode("utf-8", "replace")
            if not failed and out.text:
                sys.stderr.write(out.text)
                sys.stderr.flush()
