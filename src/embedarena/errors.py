"""One exception hierarchy; the CLI turns these into one-line messages and exit codes.

Dependencies' exceptions (elasticsearch, openai, OSError, ...) are mapped into these at one
boundary each, so callers never see a raw traceback for a user mistake.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path


class EmbedarenaError(Exception):
    """Base class. `exit_code` is what the CLI exits with."""

    exit_code = 1


class ConfigError(EmbedarenaError):
    """Bad settings, experiment file or command-line values."""

    exit_code = 2


class MissingExtraError(EmbedarenaError):
    """An optional dependency is not installed; the message names the install command."""

    exit_code = 3

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"this needs the '{package}' package: pip install 'embedarena[{extra}]'"
        )
        self.package = package
        self.extra = extra


class DataError(EmbedarenaError):
    """Bad input data. Always names the file and, where it applies, the line or row."""

    exit_code = 4

    def __init__(self, path: str | Path, message: str, line: int | None = None,
                 where: str = "line") -> None:
        loc = f"{path}:{where} {line}" if line is not None else f"{path}"
        super().__init__(f"{loc}: {message}")
        self.path = str(path)
        self.line = line
        self.detail = message


class NodeError(EmbedarenaError):
    """The managed local Elasticsearch node could not be obtained, started or stopped."""

    exit_code = 5


class SearchBackendError(EmbedarenaError):
    """Elasticsearch answered with an error, or could not be reached."""

    exit_code = 6


class AuthError(SearchBackendError):
    """Credentials were refused (Elasticsearch or an embedding API)."""


class IndexMismatchError(SearchBackendError):
    """An index was built by a different embedder fingerprint or corpus than the one asked for."""


class EmbedderError(EmbedarenaError):
    """An embedder could not be created or failed to embed."""

    exit_code = 7


def batch_label(side: str, number: int, total: int, start: int, count: int,
                ids: Sequence[str] | None = None) -> str:
    """`document batch 3/6, texts 513–768 (first id 'D12')`: where in a corpus or query set a
    batch sits (1-based, inclusive), so a failed batch can be found and looked at."""
    first = f" (first id {ids[0]!r})" if ids else ""
    return f"{side} batch {number}/{total}, texts {start + 1}–{start + count}{first}"


@contextlib.contextmanager
def naming_batch(model: str, label: str) -> Iterator[None]:
    """An `EmbedderError` raised inside comes out as one line naming the model and the batch
    (`batch_label`): "HTTP 500" alone does not say which of 40 batches to look at. Subclasses
    of other errors (auth, config) pass unchanged."""
    try:
        yield
    except EmbedderError as e:
        raise EmbedderError(f"model '{model}', {label}: {e}") from None
