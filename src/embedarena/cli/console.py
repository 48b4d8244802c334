"""Shared rich consoles: results on stdout, messages and progress on stderr."""

from __future__ import annotations

import os
import sys

from rich.console import Console


def _width(stream: object) -> int | None:
    """Piped output (CI logs, `| tee`) gets 140 columns instead of rich's 80, so comparison
    tables keep their metric names; a terminal or an explicit COLUMNS decides otherwise."""
    if os.environ.get("COLUMNS") or getattr(stream, "isatty", lambda: False)():
        return None
    return 140


console = Console(soft_wrap=True, width=_width(sys.stdout))
err_console = Console(stderr=True, soft_wrap=True, width=_width(sys.stderr))
