"""The one naming rule for things made from a model or query-set name: run directories,
fine-tune folders, Elasticsearch aliases.

File and folder names keep the name readable (Unicode letters stay: `原数据`, `bge-ft`);
Elasticsearch index names must be lower-case ASCII, so `index_slug` lower-cases the same slug
and falls back to a short hash when nothing ASCII is left.
"""

from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r"[^\w.-]+", re.UNICODE)
_NON_ES = re.compile(r"[^a-z0-9._-]+")


def slug(name: str, default: str = "unnamed") -> str:
    """A file-system-safe form of `name`: runs of other characters become `-`."""
    return _UNSAFE.sub("-", name).strip("-.") or default


def index_slug(name: str) -> str:
    """An Elasticsearch-safe form of `name` (lower-case ASCII, at most 120 characters)."""
    s = _NON_ES.sub("-", slug(name, "").lower()).strip("-._")
    if not s:
        s = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return s[:120]
