"""A real full disk for tests: a small tmpfs (mounting needs root; otherwise the test skips, saying so)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def tmpfs(mnt: Path, size: str = "2m") -> Iterator[Path]:
    """Mount a tmpfs of ``size`` at ``mnt`` (created) for the block; unmounted afterwards."""
    mnt.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def fill(mnt: Path) -> None:
    """Write zeros to ``mnt/filler`` until the disk is full to the last byte."""
    fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(OSError, match="No space left"):
            while True:
                os.write(fd, bytes(4096))
    finally:
        os.close(fd)


def files_under(root: Path) -> set[str]:
    """Every file below ``root``, relative to it: what a failure must leave as it was."""
    return {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs}
