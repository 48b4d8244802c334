"""The CLI's progress: in a log (not a terminal) a plain line every few seconds with counts,
rate and ETA, for work that counts (`advance`) and work that reports its position (training
steps, `update(completed=)`); notes as one line, warnings marked."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from embedarena.cli import progress as cli_progress
from embedarena.cli.progress import CliProgress


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(cli_progress.time, "monotonic", c)
    return c


def _log() -> tuple[CliProgress, io.StringIO]:
    buf = io.StringIO()
    return CliProgress(Console(file=buf, width=200), interval=5.0, live=False), buf


def test_log_lines_every_interval_with_rate_and_eta(clock: Clock) -> None:
    bar, buf = _log()
    with bar, bar.task("index minilm", total=1000) as task:
        clock.t += 1
        task.advance(100)  # 1 s in: no line yet
        assert buf.getvalue() == ""
        clock.t += 4
        task.advance(150)  # 5 s: a line
        clock.t += 5
        task.advance(250)  # 10 s: another
    lines = buf.getvalue().splitlines()
    assert lines[0] == "index minilm: 250/1000 (25%), 50.0/s, ETA 15 s"
    assert lines[1] == "index minilm: 500/1000 (50%), 50.0/s, ETA 10 s"
    assert lines[2] == "index minilm: 500/1000 (50%), 50.0/s, done in 10.0 s"  # closed


def test_position_updates_print_too(clock: Clock) -> None:
    """Training reports the global step with update(completed=): a piped fine-tune must
    still print a line every few seconds."""
    bar, buf = _log()
    with bar:
        task = bar.task("train", total=40)
        for step in range(1, 41):
            clock.t += 1
            task.update(completed=step, description=f"train (loss {1 / step:.3f})")
        task.close()
    lines = buf.getvalue().splitlines()
    assert len(lines) == 9  # steps 5, 10, ..., 40, then the closing line
    assert lines[0].startswith("train (loss 0.200): 5/40 (12%)")
    assert lines[-1].endswith("done in 40.0 s")


def test_short_tasks_stay_quiet_and_notes_are_lines(clock: Clock) -> None:
    bar, buf = _log()
    with bar:
        with bar.task("search bm25 × q", total=5) as t:
            t.advance(5)
        bar.note("minilm: reused index embedarena-minilm-1")
        bar.note("skipped [2] of 6 lines", level="warning")
    assert buf.getvalue().splitlines() == [
        "minilm: reused index embedarena-minilm-1",
        "warning: skipped [2] of 6 lines"]  # markup-like text is shown as written


def test_terminal_mode_draws_a_bar() -> None:
    buf = io.StringIO()
    bar = CliProgress(Console(file=buf, width=100, force_terminal=True), live=True)
    with bar:
        t = bar.task("embed 10 documents (m)", total=10)
        t.advance(10)
        t.close("embed done")
    assert "embed done" in buf.getvalue() and "10/10" in buf.getvalue()
