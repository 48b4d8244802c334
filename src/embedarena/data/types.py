"""Small plain data types that travel between stages (corpus → index → run → metrics)."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Corpus:
    """Documents to index. For a label corpus (a list of label strings) each id is the label text.

    `ids` are what gold labels refer to; `texts` is what gets embedded; `metadata` is stored
    alongside each document in the index.
    """

    ids: list[str]
    texts: list[str]
    source: str = ""
    metadata: list[dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.texts):
            raise ValueError(f"corpus has {len(self.ids)} ids but {len(self.texts)} texts")
        if self.metadata is not None and len(self.metadata) != len(self.ids):
            raise ValueError("corpus metadata must have one entry per document")

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_labels(cls, labels: Sequence[str], source: str = "") -> Corpus:
        return cls(ids=list(labels), texts=list(labels), source=source)

    def sha256(self) -> str:
        """Content hash over ids and texts (order-sensitive): decides whether an index is stale.

        Computed once per corpus object (a run asks for it per row and query set)."""
        return self._sha256

    @functools.cached_property
    def _sha256(self) -> str:
        h = hashlib.sha256()
        for doc_id, text in zip(self.ids, self.texts):
            h.update(json.dumps([doc_id, text], ensure_ascii=False).encode("utf-8"))
            h.update(b"\n")
        return h.hexdigest()


@dataclass(frozen=True)
class Query:
    """One query with its gold judgements: doc id → gain (> 0 means relevant).

    Label data (test JSONL `{"query", "pos"}`) gives gain 1.0 to every pos label; graded
    collections (Cranfield, BEIR qrels) keep their grades, and 0-grade judgements are kept
    (judged non-relevant) but never count as relevant.
    """

    qid: str
    text: str
    gold: dict[str, float] = field(default_factory=dict)

    @property
    def relevant(self) -> list[str]:
        return [d for d, g in self.gold.items() if g > 0]


@dataclass(frozen=True)
class QuerySet:
    name: str
    queries: list[Query]
    source: str = ""

    def __len__(self) -> int:
        return len(self.queries)

    def __iter__(self) -> Iterator[Query]:
        return iter(self.queries)

    def sha256(self) -> str:
        h = hashlib.sha256()
        for q in self.queries:
            h.update(json.dumps([q.qid, q.text, sorted(q.gold.items())],
                                ensure_ascii=False).encode("utf-8"))
            h.update(b"\n")
        return h.hexdigest()
