"""Search an index in batches with `_msearch`: knn for dense rows, BM25 `match` for lexical.

Query bodies are built by pure functions (tests assert on them); `msearch_batches` is the one
place that executes them, reading every response (an error in one query is an error, named).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from embedarena.errors import SearchBackendError
from embedarena.indexer.build import DOC_ID_FIELD, TEXT_FIELD, VECTOR_FIELD
from embedarena.indexer.es import Target, es_errors

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch


@dataclass(frozen=True)
class Hit:
    doc_id: str
    score: float
    text: str


def knn_body(vector: Sequence[float], k: int, num_candidates: int) -> dict[str, Any]:
    return {
        "knn": {"field": VECTOR_FIELD, "query_vector": list(map(float, vector)), "k": k,
                "num_candidates": max(num_candidates, k)},
        "size": k,
        "_source": [DOC_ID_FIELD, TEXT_FIELD],
    }


def bm25_body(text: str, k: int) -> dict[str, Any]:
    return {
        "query": {"match": {TEXT_FIELD: {"query": text}}},
        "size": k,
        "_source": [DOC_ID_FIELD, TEXT_FIELD],
    }


def msearch_batches(client: Elasticsearch, target: Target, index: str,
                    bodies: Sequence[dict[str, Any]], batch: int = 64,
                    progress: Callable[[int], None] | None = None) -> list[list[Hit]]:
    """Run the bodies in `_msearch` rounds of `batch`; results in input order."""
    out: list[list[Hit]] = []
    for start in range(0, len(bodies), batch):
        chunk = bodies[start:start + batch]
        searches: list[dict[str, Any]] = []
        for b in chunk:
            searches.append({"index": index})
            searches.append(b)
        with es_errors(target, f"search {index}"):
            resp = client.msearch(searches=searches)
        for i, r in enumerate(resp["responses"]):
            if "error" in r:
                err = r["error"]
                reason = err.get("reason", err) if isinstance(err, dict) else err
                raise SearchBackendError(f"search {index}: query {start + i + 1} failed: {reason}")
            out.append([
                Hit(h["_source"].get(DOC_ID_FIELD, h["_id"]), float(h["_score"]),
                    h["_source"].get(TEXT_FIELD, ""))
                for h in r["hits"]["hits"]
            ])
        if progress is not None:
            progress(len(chunk))
    return out


def dense_bodies(vectors: np.ndarray, k: int, num_candidates: int) -> list[dict[str, Any]]:
    return [knn_body(v, k, num_candidates) for v in vectors]
