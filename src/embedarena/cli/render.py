"""Rendering what the arena returns: build and reuse lines, cache counts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape

from embedarena.cli.console import console, err_console

if TYPE_CHECKING:
    from embedarena.arena import ExperimentResult


def cache_text(counts: dict[str, int], what: str = "embedding", done: str = "embedded") -> str:
    if not counts:
        return ""
    bad = counts.get("bad", 0)
    return (f"; {what} cache: {counts.get('hits', 0)} hits, {counts.get('misses', 0)} {done}"
            + (f" ({bad} damaged entr{'y' if bad == 1 else 'ies'} recomputed)" if bad else ""))


def _caches(result: ExperimentResult, name: str) -> str:
    rerank = result.stats.get(name, {}).get("rerank_cache") or {}
    return cache_text(result.cache(name)) + cache_text(rerank, "rerank", "scored")


def print_builds(result: ExperimentResult, only_reused: bool = False) -> None:
    """One line per row built or reused (with its cache counts), so a re-run says what it
    reused. `only_reused`: just the reuse lines (the build itself showed progress)."""
    for name in result.rows:
        b = result.builds.get(name)
        cache = _caches(result, name)
        if b is None:  # nothing to build (a two-stage or fused row); its caches still count
            if only_reused and cache:
                err_console.print(f"{escape(name)}: {cache[2:]}", highlight=False)
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
