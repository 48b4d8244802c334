"""One progress type for long work (embedding, bulk loading, searching, training, mining).

Library code never prints: it asks the *current* `Progress` for tasks and notes. The CLI
installs one that draws rich bars on a terminal and writes a plain line every few seconds
when the output is a log file; library callers get `NullProgress` unless they pass one
(`run_experiment(..., progress=...)`) or install one with `using(...)`.

A context variable rather than a parameter threaded through every constructor, because
the embedder that needs a bar (a 1,400-document build) is created far from the caller that
owns the screen.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

Level = Literal["info", "warning"]


@runtime_checkable
class Task(Protocol):
    """One unit of long work with a known (or unknown: None) total."""

    def advance(self, n: int = 1) -> None: ...

    def update(self, *, description: str | None = None, total: int | None = None,
               completed: int | None = None) -> None: ...

    def close(self, description: str | None = None) -> None: ...

    def __enter__(self) -> Task: ...

    def __exit__(self, *exc: object) -> None: ...


@runtime_checkable
class Progress(Protocol):
    """Where long work reports: tasks with counts, and one-line notes for the user."""

    def task(self, description: str, total: int | None = None, *,
             completed: int = 0) -> Task: ...

    def note(self, message: str, *, level: Level = "info") -> None: ...


class TaskBase:
    """Context-manager plumbing shared by task implementations."""

    def advance(self, n: int = 1) -> None:
        pass

    def update(self, *, description: str | None = None, total: int | None = None,
               completed: int | None = None) -> None:
        pass

    def close(self, description: str | None = None) -> None:
        pass

    def __enter__(self) -> TaskBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NullProgress:
    """Reports nothing (the library default; results carry the counts anyway)."""

    def task(self, description: str, total: int | None = None, *,
             completed: int = 0) -> Task:
        return TaskBase()

    def note(self, message: str, *, level: Level = "info") -> None:
        pass


@dataclass
class RecordedTask(TaskBase):
    description: str
    total: int | None
    completed: int = 0
    closed: bool = False

    def advance(self, n: int = 1) -> None:
        self.completed += n

    def update(self, *, description: str | None = None, total: int | None = None,
               completed: int | None = None) -> None:
        if description is not None:
            self.description = description
        if total is not None:
            self.total = total
        if completed is not None:
            self.completed = completed

    def close(self, description: str | None = None) -> None:
        if description is not None:
            self.description = description
        self.closed = True


@dataclass
class RecordingProgress:
    """Keeps every task and note (tests, and callers that render at the end)."""

    tasks: list[RecordedTask] = field(default_factory=list)
    notes: list[tuple[Level, str]] = field(default_factory=list)

    def task(self, description: str, total: int | None = None, *,
             completed: int = 0) -> Task:
        t = RecordedTask(description, total, completed)
        self.tasks.append(t)
        return t

    def note(self, message: str, *, level: Level = "info") -> None:
        self.notes.append((level, message))


NULL = NullProgress()
_current: ContextVar[Progress] = ContextVar("embedarena_progress", default=NULL)


def current() -> Progress:
    """The progress installed by the caller (`using`), else `NullProgress`."""
    return _current.get()


@contextlib.contextmanager
def using(progress: Progress | None) -> Iterator[Progress]:
    """Install `progress` for the code inside the block (None keeps the current one)."""
    if progress is None:
        yield current()
        return
    token = _current.set(progress)
    try:
        yield progress
    finally:
        _current.reset(token)
