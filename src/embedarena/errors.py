"""One exception hierarchy; the CLI turns these into one-line messages and exit codes.

Dependencies' exceptions (elasticsearch, openai, OSError, ...) are mapped into these at one
boundary each, so callers never see a raw traceback for a user mistake.
"""

from __future__ import annotations

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
