"""Shared rich consoles: results on stdout, messages and progress on stderr."""

from __future__ import annotations

from rich.console import Console

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
