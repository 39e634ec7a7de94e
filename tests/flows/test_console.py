"""The command line's progress display and closing line; ``--version``."""

from __future__ import annotations

import io
import threading

import pytest

from flows import progress as progress_module
from flows.cli import main, package_version
from flows.console import PlainProgressLines, RichProgressBar, progress_display, rates_line
from flows.progress import Progress, format_seconds


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(progress_module.time, "perf_counter", c)
    return c


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_rates_with_and_without_start_up_and_eta(clock):
    p = Progress(total_shards=4)
    assert p.eta_seconds is None
    clock.now += 10  # 10 s start-up (Ray, model loads), then a shard of 100 samples that took 2 s
    p.shard_done(100, seconds=2.0)
    assert p.startup_seconds == pytest.approx(8.0)
    assert p.running_samples_per_second == pytest.approx(50.0)
    assert p.samples_per_second == pytest.approx(10.0)
    assert p.eta_seconds == pytest.approx(6.0)  # 3 shards left at 2 s each
    clock.now += 2
    p.shard_done(100, seconds=2.0)
    clock.now += 2
    p.shard_done(100, seconds=2.0)
    clock.now += 2
    p.shard_done(100, seconds=2.0)
    assert p.finished and p.eta_seconds == 0.0
    assert p.samples_per_second == pytest.approx(400 / 16)
    assert p.running_samples_per_second == pytest.approx(400 / 8)
    assert "elapsed 0:16" in p.line() and "ETA 0:00" in p.line()


def test_skipped_shards_do_not_count_towards_the_pace(clock):
    p = Progress(total_shards=10, done_shards=8)
    clock.now += 5
    p.shard_done(10, seconds=1.0)
    assert p.eta_seconds == pytest.approx(1.0)


def test_plain_lines_without_a_terminal_no_redraws(clock):
    stream = io.StringIO()
    display = progress_display(stream, interval=60)
    assert isinstance(display, PlainProgressLines)
    p = Progress(total_shards=3)
    display(p)
    for _ in range(3):
        clock.now += 1
        p.shard_done(10, seconds=1.0)
        display(p)  # within the interval: only the first and the last line are written
    text = stream.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert len(lines) == 2
    assert lines[-1].startswith("lrp-audit: 3/3 shards (100%)") and "ETA 0:00" in lines[-1]


def test_pipe_mode_beats_while_no_shard_finishes():
    stream = io.StringIO()
    display = progress_display(stream, interval=0.02)  # a short interval: the mechanism, not the time
    p = Progress(total_shards=4)
    display(p)  # the explain step began; then no shard finishes for a while
    for _ in range(2000):
        if len(stream.getvalue().splitlines()) >= 4:
            break
        threading.Event().wait(0.01)
    display.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 4, lines  # the first line, then heartbeats
    assert all(line.startswith("lrp-audit: 0/4 shards (0%), 0 samples") for line in lines)
    after = len(lines)
    threading.Event().wait(0.1)
    assert len(stream.getvalue().splitlines()) == after  # closed: no more beats


def test_a_slow_run_shows_its_rate_not_zero(clock):
    p = Progress(total_shards=2)
    clock.now += 80
    p.shard_done(3, seconds=70.0)
    assert "3 samples, 0.037 samples/s" in p.line()


def test_a_terminal_gets_a_rich_bar_with_elapsed_time_and_eta(clock):
    stream = FakeTerminal()
    display = progress_display(stream)
    assert isinstance(display, RichProgressBar)
    p = Progress(total_shards=2)
    display(p)
    clock.now += 1
    p.shard_done(10, seconds=1.0)
    display(p)
    clock.now += 1
    p.shard_done(10, seconds=1.0)
    display(p)
    text = stream.getvalue()
    assert "2/2" in text and "elapsed" in text and "left" in text and "samples/s" in text


def test_closing_line_states_both_rates():
    result = {"samples_explained": 1000, "samples_per_second": 125.0, "samples_per_second_running": 500.0}
    line = rates_line({**result, "startup_seconds": 3.0}, 10.0)
    assert "125 samples/s in the explain step (samples_per_second" in line  # the JSON's figures, as they are
    assert "500 samples/s once running (samples_per_second_running)" in line and "3.0 s" in line
    slow = rates_line({"samples_explained": 3, "samples_per_second": 0.042, "samples_per_second_running": 0.3}, 80.0)
    assert "0.042 samples/s in the explain step" in slow and "0.3 samples/s once running" in slow
    assert " 0 samples/s" not in slow
    assert "nothing to explain" in rates_line({"samples_explained": 0}, 2.0)


def test_format_seconds():
    assert format_seconds(None) == "?"
    assert format_seconds(65) == "1:05"
    assert format_seconds(3725) == "1:02:05"


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.strip() == f"lrp-audit {package_version()}" and out.strip() != "lrp-audit"


def test_running_rate_uses_when_shards_really_began(clock, monkeypatch):
    """Results can reach the driver late and together; the workers' start times keep the rate honest."""
    wall = Clock()
    monkeypatch.setattr(progress_module.time, "time", wall)
    p = Progress(total_shards=2)
    clock.now += 10
    wall.now += 10
    # two shards of 2 s ran one after the other (began at wall 1002 and 1004), both reported at 1010
    p.shard_done(100, seconds=2.0, started_at=1002.0)
    p.shard_done(100, seconds=2.0, started_at=1004.0)
    assert p.running_samples_per_second == pytest.approx(200 / 8)
