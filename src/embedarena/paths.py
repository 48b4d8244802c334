"""Where embedarena keeps state outside the repo: the ES distribution, node data, caches.

`EMBEDARENA_HOME` overrides everything. Otherwise `$XDG_CACHE_HOME/embedarena` (or
`~/.cache/embedarena`); as root, `/var/lib/embedarena`, because Elasticsearch refuses to run as
root and the unprivileged user it then runs as cannot enter root's 0700 home directory.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    env = os.environ.get("EMBEDARENA_HOME")
    if env:
        return Path(env).expanduser().resolve()
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/embedarena")
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return (base / "embedarena").resolve()


def cache_dir(kind: str) -> Path:
    """A per-kind cache folder (`embeddings`, `datasets`, `dist`, ...), created on demand."""
    p = home() / "cache" / kind
    p.mkdir(parents=True, exist_ok=True)
    return p
