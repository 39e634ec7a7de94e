"""What ``lrp-audit run`` shows on stderr while an audit runs.

On a terminal: a ``rich`` progress bar (shards, samples/s, elapsed time, time left), redrawn in
place. Anywhere else (a log file, a pipe, CI): no redraws and no ANSI codes, one plain line per
``interval`` seconds (10), also while no shard finishes (a heartbeat), and a last line when the audit
finishes."""

from __future__ import annotations

import sys
import threading
import time
from typing import IO, Any

from flows.progress import Progress, format_rate, format_seconds


class PlainProgressLines:
    """One line per ``interval`` seconds (and the last one), for logs: nothing to redraw.

    A heartbeat thread writes the line again whenever ``interval`` passes without one, so a pipe
    hears from a run while a long shard is still running (elapsed time and ETA move on)."""

    def __init__(self, stream: IO[str], interval: float = 10.0) -> None:
        self.stream, self.interval = stream, interval
        self._last: float | None = None
        self._latest: Progress | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def __call__(self, progress: Progress) -> None:
        with self._lock:
            self._latest = progress
            now = time.monotonic()
            due = self._last is None or now - self._last >= self.interval
            if due or progress.finished:
                self._write(progress, now)
            if self._heartbeat is None and not progress.finished:
                self._heartbeat = threading.Thread(target=self._beat, name="lrp-audit-heartbeat", daemon=True)
                self._heartbeat.start()

    def stage(self, text: str) -> None:
        """A step after the shards (eMPRT, report, SpRAy): its own line."""
        with self._lock:
            self.stream.write(f"lrp-audit: {text}\n")
            self.stream.flush()

    def _write(self, progress: Progress, now: float) -> None:
        self._last = now
        self.stream.write(f"lrp-audit: {progress.line()}\n")
        self.stream.flush()

    def _beat(self) -> None:
        wait = self.interval
        while not self._stop.wait(wait):
            with self._lock:
                latest, now = self._latest, time.monotonic()
                if latest is None or latest.finished:
                    return
                since = now - (self._last if self._last is not None else now)
                if since >= self.interval:
                    self._write(latest, now)
                    since = 0.0
                wait = max(self.interval - since, 0.0)

    def close(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()


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
        fields = {"samples": progress.samples, "rate": format_rate(progress.samples_per_second)}
        if self._task is None:
            self._bar.start()
            self._task = self._bar.add_task(
                "audit", total=progress.total_shards, completed=progress.done_shards, **fields
            )
        self._bar.update(self._task, completed=progress.done_shards, **fields)
        if progress.finished:
            self.close()

    def stage(self, text: str) -> None:
        """A step after the shards: printed above the bar (or alone once it stopped)."""
        self._bar.console.print(f"lrp-audit: {text}", markup=False, highlight=False)

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
    """The closing line: the two rates of the JSON result (``samples_per_second``: the explain step,
    start-up included, the rate the progress lines show; ``samples_per_second_running``: once running)
    printed as they are there, and the whole command's time."""
    n = int(result.get("samples_explained", 0))
    if not n:
        return f"lrp-audit: nothing to explain (all shards committed), {format_seconds(wall_seconds)} in all"
    step = float(result.get("samples_per_second") or 0.0)
    running = float(result.get("samples_per_second_running") or 0.0)
    return (
        f"lrp-audit: {n} samples explained; {format_rate(step)} samples/s in the explain step "
        f"(samples_per_second: Ray and worker model loads included, "
        f"{float(result.get('startup_seconds') or 0.0):.1f} s), {format_rate(running)} samples/s once running "
        f"(samples_per_second_running); {format_seconds(wall_seconds)} for the whole command"
    )
