"""Placeholder: the managed node commands (being written)."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, help="Manage the local Elasticsearch node.")
