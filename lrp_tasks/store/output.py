"""Writing a result file (report, comparison, heatmaps) so that a failure leaves nothing behind.

The data goes to a hidden temporary next to the target (``.<name>.<32 hex>.tmp``, a name the store's
clean-up recognises) and is renamed over the target only when complete; on any failure the temporary
is removed and an ``OSError`` (a full disk: ENOSPC) becomes one :class:`OutputWriteError` line naming
the file. The previous target, if any, is untouched.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterator

from .errors import OutputWriteError
from .layout import tmp_name


@contextlib.contextmanager
def output_file(target: str) -> Iterator[str]:
    """Yield a temporary path to write; on success it replaces ``target``, on failure it is removed."""
    directory, name = os.path.split(os.path.abspath(target))
    tmp = os.path.join(directory, tmp_name(name, uuid.uuid4().hex))
    try:
        os.makedirs(directory, exist_ok=True)
        yield tmp
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OutputWriteError(
                f"could not write {target}: {_reason(exc)}; nothing was replaced and no temporary is left"
            ) from exc
        raise


def _reason(exc: OSError) -> str:
    """The OS's words for the error, on one line (HDF5's messages span several lines and carry the
    errno inside their text)."""
    found = re.search(r"errno = (\d+)", str(exc))
    if found:
        return os.strerror(int(found.group(1)))
    return " ".join(str(exc.strerror or exc).split()) or type(exc).__name__


def write_text(target: str, text: str) -> None:
    with output_file(target) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def write_bytes(target: str, data: bytes) -> None:
    with output_file(target) as tmp, open(tmp, "wb") as f:
        f.write(data)
