"""Progress of an audit as it runs: shards done / total and samples/s, for logs, the Prefect UI
(a progress artifact) and the command line (listeners such as the CLI's progress bar)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

Listener = Callable[["Progress"], None]
_listeners: list[Listener] = []


def add_listener(listener: Listener) -> None:
    """Called after every shard in this process (the CLI draws its progress bar with it)."""
    _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


@dataclass
class Progress:
    total_shards: int
    done_shards: int = 0
    samples: int = 0
    started: float = field(default_factory=time.perf_counter)
    first_done: float | None = None

    def shard_done(self, samples: int) -> None:
        self.done_shards += 1
        self.samples += samples
        if self.first_done is None:
            self.first_done = time.perf_counter()
        for listener in list(_listeners):
            listener(self)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def percent(self) -> float:
        return 100.0 * self.done_shards / self.total_shards if self.total_shards else 100.0

    def line(self) -> str:
        return (
            f"{self.done_shards}/{self.total_shards} shards ({self.percent:.0f}%), "
            f"{self.samples} samples, {self.samples_per_second:.0f} samples/s"
        )
