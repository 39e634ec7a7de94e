"""What ``lrp-audit run`` shows on stderr while an audit runs.

On a terminal: a ``rich`` progress bar (shards, samples/s, elapsed time, time left), redrawn in
place. Anywhere else (a log file, a pipe, CI): no redraws and no ANSI codes, one plain line per
``interval`` seconds and a last line when the audit finishes."""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from flows.progress import Progress, format_seconds


class PlainProgressLines:
    """One line per ``interval`` seconds (and the last one), for logs: nothing to redraw."""

    def __init__(self, stream: IO[str], interval: float = 10.0) -> None:
        self.stream, self.interval = stream, interval
        self._last: float | None = None

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        due = self._last is None or now - self._last >= self.interval
        if not (due or progress.finished):
            return
        self._last = now
        self.stream.write(f"lrp-audit: {progress.line()}\n")
        self.stream.flush()

    def close(self) -> None:
        pass


class RichProgressBar:
    """A ``rich`` progress bar on a terminal."""

    def __init__(self, stream: IO[str]) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn("shards"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[samples]} samples, {task.fields[rate]} samples/s"),
            TextColumn("elapsed"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=Console(file=stream),
            transient=False,
        )
        self._task: Any = None

    def __call__(self, progress: Progress) -> None:
        fields = {"samples": progress.samples, "rate": f"{progress.samples_per_second:.0f}"}
        if self._task is None:
            self._bar.start()
            self._task = self._bar.add_task(
                "audit", total=progress.total_shards, completed=progress.done_shards, **fields
            )
        self._bar.update(self._task, completed=progress.done_shards, **fields)
        if progress.finished:
            self.close()

    def close(self) -> None:
        if self._task is not None:
            self._bar.stop()


def progress_display(stream: IO[str] | None = None, interval: float = 10.0) -> PlainProgressLines | RichProgressBar:
    """A bar on a terminal, plain periodic lines otherwise (``isatty`` decides)."""
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    if callable(isatty) and isatty():
        return RichProgressBar(stream)
    return PlainProgressLines(stream, interval)


def rates_line(result: dict[str, Any], wall_seconds: float) -> str:
    """The closing line: samples/s with and without start-up, and what the start-up was."""
    n = int(result.get("samples_explained", 0))
    if not n:
        return f"lrp-audit: nothing to explain (all shards committed), {format_seconds(wall_seconds)} in all"
    running = float(result.get("samples_per_second_running") or 0.0)
    return (
        f"lrp-audit: {n} samples explained; {n / wall_seconds:.0f} samples/s end to end "
        f"({format_seconds(wall_seconds)} for the whole command, start-up included), "
        f"{running:.0f} samples/s once running (start-up excluded: Ray and worker model loads "
        f"{float(result.get('startup_seconds') or 0.0):.1f} s)"
    )
