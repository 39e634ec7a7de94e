"""Progress of an audit as it runs: shards done / total, samples/s and time left, for logs, the
Prefect UI (a progress artifact) and the command line (listeners such as the CLI's progress display).

Two rates are kept apart: end to end (since the explain step began: Ray start and each worker's
model load included) and once running (since the earliest shard began on a worker: the rate the
audit keeps up once started, what a longer audit approaches)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

Listener = Callable[["Progress"], None]
_listeners: list[Listener] = []


def add_listener(listener: Listener) -> None:
    """Called when the explain step starts and after every shard in this process."""
    _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def _notify(progress: Progress) -> None:
    for listener in list(_listeners):
        listener(progress)


StageListener = Callable[[str], None]
_stage_listeners: list[StageListener] = []


def add_stage_listener(listener: StageListener) -> None:
    """Called with one line when a step after the shards begins or ends (eMPRT, the report, SpRAy)."""
    _stage_listeners.append(listener)


def remove_stage_listener(listener: StageListener) -> None:
    if listener in _stage_listeners:
        _stage_listeners.remove(listener)


def stage(text: str) -> None:
    """Tell the listeners (the command line's display) what the run is doing now."""
    for listener in list(_stage_listeners):
        listener(text)


def format_seconds(seconds: float | None) -> str:
    """``1:02:03`` / ``2:03``; ``?`` when unknown."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_rate(per_second: float) -> str:
    """A rate for people: whole numbers from 10 up, two significant digits below (``0.42``), so a
    slow run never reads "0 samples/s"."""
    if per_second != per_second or per_second <= 0:
        return "0"
    return f"{per_second:.0f}" if per_second >= 10 else f"{per_second:.2g}"


@dataclass
class Progress:
    total_shards: int
    done_shards: int = 0
    samples: int = 0
    started: float = field(default_factory=lambda: time.perf_counter())
    first_done: float | None = None
    last_done: float | None = None
    work_started: float | None = None
    """When the earliest shard of this run began on a worker (commit time minus its duration)."""
    skipped_shards: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.skipped_shards = self.done_shards
        _notify(self)

    def shard_done(self, samples: int, seconds: float | None = None, started_at: float | None = None) -> None:
        """One more shard committed: `samples` explained in `seconds` on its worker, which began it at
        wall-clock time `started_at` (preferred: the driver may see a result well after it ended)."""
        now = time.perf_counter()
        self.done_shards += 1
        self.samples += samples
        if self.first_done is None:
            self.first_done = now
        self.last_done = now
        if started_at is not None:
            began = now - max(0.0, time.time() - started_at)
        else:
            began = now - (seconds if seconds is not None else 0.0)
        self.work_started = began if self.work_started is None else min(self.work_started, began)
        _notify(self)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def finished(self) -> bool:
        return self.done_shards >= self.total_shards

    @property
    def samples_per_second(self) -> float:
        """End to end: samples / time since the explain step began (start-up included)."""
        end = self.last_done if self.finished and self.last_done is not None else time.perf_counter()
        seconds = end - self.started
        return self.samples / seconds if seconds > 0 else 0.0

    @property
    def startup_seconds(self) -> float | None:
        """From the start of the explain step to the first shard beginning on a worker."""
        return None if self.work_started is None else max(0.0, self.work_started - self.started)

    @property
    def running_samples_per_second(self) -> float:
        """Once running: samples / time since the earliest shard began (start-up excluded)."""
        if self.work_started is None or self.last_done is None:
            return 0.0
        seconds = self.last_done - self.work_started
        return self.samples / seconds if seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Time left at the pace of the shards this run has committed so far."""
        ran = self.done_shards - self.skipped_shards
        if self.finished:
            return 0.0
        if ran <= 0 or self.work_started is None:
            return None
        per_shard = (time.perf_counter() - self.work_started) / ran
        return per_shard * (self.total_shards - self.done_shards)

    @property
    def percent(self) -> float:
        return 100.0 * self.done_shards / self.total_shards if self.total_shards else 100.0

    def line(self) -> str:
        return (
            f"{self.done_shards}/{self.total_shards} shards ({self.percent:.0f}%), "
            f"{self.samples} samples, {format_rate(self.samples_per_second)} samples/s, "
            f"elapsed {format_seconds(self.elapsed)}, ETA {format_seconds(self.eta_seconds)}"
        )
