"""The CLI's `Progress`: rich bars on a terminal, a plain line every few seconds in a log.

Training runs under `nohup ... > log` and CI logs are not terminals: there a bar draws
nothing useful, so each task writes `description: done/total (pct), rate/s, ETA` at most every
`interval` seconds, and one line when it ends (if it ran that long).
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from embedarena.cli.console import err_console
from embedarena.progress import Level, RecordedTask, Task, TaskBase

#: Seconds between plain progress lines of one task.
LOG_INTERVAL_S = 5.0


def _rate(n: float, seconds: float) -> str:
    r = n / seconds if seconds > 0 else 0.0
    return f"{r:.1f}/s" if r < 100 else f"{r:.0f}/s"


class _RichTask(TaskBase):
    def __init__(self, bar: Progress, task: TaskID) -> None:
        self.bar, self.id = bar, task

    def advance(self, n: int = 1) -> None:
        self.bar.advance(self.id, n)

    def update(self, *, description: str | None = None, total: int | None = None,
               completed: int | None = None) -> None:
        kwargs: dict[str, Any] = {}
        if description is not None:
            kwargs["description"] = escape(description)
        if total is not None:
            kwargs["total"] = total
        if completed is not None:
            kwargs["completed"] = completed
        self.bar.update(self.id, **kwargs)

    def close(self, description: str | None = None) -> None:
        task = self.bar.tasks[self.bar.task_ids.index(self.id)] \
            if self.id in self.bar.task_ids else None
        if task is not None and task.total is None:
            self.bar.update(self.id, total=max(task.completed, 1),
                            completed=max(task.completed, 1))
        if description is not None:
            self.bar.update(self.id, description=escape(description))
        self.bar.stop_task(self.id)


class _LogTask(RecordedTask):
    """Counts like a recorded task; writes a line every `interval` seconds of work."""

    def __init__(self, console: Console, description: str, total: int | None, completed: int,
                 interval: float) -> None:
        super().__init__(description, total, completed)
        self.console = console
        self.interval = interval
        self.start = self.last = time.monotonic()
        self.printed = False

    def advance(self, n: int = 1) -> None:
        self.completed += n
        self._maybe_line()

    def update(self, *, description: str | None = None, total: int | None = None,
               completed: int | None = None) -> None:
        """Work that reports its position (training steps) prints like work that counts."""
        super().update(description=description, total=total, completed=completed)
        if completed is not None:
            self._maybe_line()

    def _maybe_line(self) -> None:
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._line(now)

    def _line(self, now: float, final: bool = False) -> None:
        took, done = now - self.start, self.completed
        if self.total:
            text = f"{self.description}: {done}/{self.total} ({100.0 * done / self.total:.0f}%)"
        else:
            text = f"{self.description}: {done}"
        text += f", {_rate(done, took)}"
        if final:
            text += f", done in {took:.1f} s"
        elif self.total and done >= 0.02 * self.total:  # early rates say little
            text += f", ETA {took * (self.total - done) / done:.0f} s"
        self.console.print(text, markup=False, highlight=False)
        self.printed = True

    def close(self, description: str | None = None) -> None:
        if self.closed:
            return
        super().close(description)
        now = time.monotonic()
        if self.printed or now - self.start >= self.interval:
            self._line(now, final=True)


class CliProgress:
    """`Progress` for the command line (use as a context manager around the work)."""

    def __init__(self, console: Console | None = None, interval: float = LOG_INTERVAL_S,
                 live: bool | None = None) -> None:
        self.console = console or err_console
        self.interval = interval
        self.live = self.console.is_terminal if live is None else live
        self._bar: Progress | None = None
        if self.live:
            self._bar = Progress(
                TextColumn("[progress.description]{task.description}"), BarColumn(),
                MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                console=self.console, transient=False)

    def __enter__(self) -> CliProgress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def task(self, description: str, total: int | None = None, *,
             completed: int = 0) -> Task:
        if self._bar is not None:
            return _RichTask(self._bar, self._bar.add_task(escape(description), total=total,
                                                           completed=completed))
        return _LogTask(self.console, description, total, completed, self.interval)

    def note(self, message: str, *, level: Level = "info") -> None:
        out = self._bar.console if self._bar is not None else self.console
        prefix = "[yellow]warning:[/] " if level == "warning" else ""
        out.print(prefix + escape(message), highlight=False, soft_wrap=True)
