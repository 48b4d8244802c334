"""Rendering what the arena returns: build and reuse lines, cache counts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape

from embedarena.cli.console import console, err_console

if TYPE_CHECKING:
    from embedarena.arena import ExperimentResult


def cache_text(counts: dict[str, int]) -> str:
    if not counts:
        return ""
    return (f"; embedding cache: {counts.get('hits', 0)} hits, {counts.get('misses', 0)} "
            "embedded")


def print_builds(result: ExperimentResult, only_reused: bool = False) -> None:
    """One line per row built or reused (with its cache counts), so a re-run says what it
    reused. `only_reused`: just the reuse lines (the build itself showed progress)."""
    for name in result.rows:
        b = result.builds.get(name)
        cache = cache_text(result.cache(name))
        if b is None:
            continue
        if b.note:
            if not only_reused:
                console.print(f"{escape(name)}: {escape(b.note)}")
        elif b.reused:
            if only_reused:
                err_console.print(f"{escape(name)}: reused index {b.index}{cache}",
                                  highlight=False)
            else:
                console.print(f"{escape(name)}: index {b.alias} is current ({b.docs} docs, "
                              f"same model fingerprint and corpus); reused{cache}",
                              highlight=False)
        elif only_reused:
            if cache:
                err_console.print(f"{escape(name)}: built {b.index}{cache}", highlight=False)
        else:
            console.print(f"{escape(name)}: built {b.index} ({b.docs} docs, {b.seconds:.1f} s) "
                          f"→ alias {b.alias}"
                          + (f"; deleted {', '.join(b.deleted_old)}" if b.deleted_old else "")
                          + cache, highlight=False)
