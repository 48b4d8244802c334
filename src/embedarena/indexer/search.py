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


def bm25_body(text: str, k: int, field: str = TEXT_FIELD) -> dict[str, Any]:
    """BM25 `match` on `field` (`text`, or `text_seg` for client-side segmented chains)."""
    return {
        "query": {"match": {field: {"query": text}}},
        "size": k,
        "_source": [DOC_ID_FIELD, TEXT_FIELD],
    }


def rrf_retriever_body(text: str, vector: Sequence[float], k: int, rank_constant: int,
                       window: int, num_candidates: int,
                       field: str = TEXT_FIELD) -> dict[str, Any]:
    """ES native `rrf` retriever over BM25 `match` + kNN on one index (needs rank-rrf).

    Only usable when both members live in the same index: the dense index's `text` field is
    analysed with `standard`, so it serves a `standard` BM25 member with identical statistics.
    """
    return {
        "retriever": {"rrf": {
            "retrievers": [
                {"standard": {"query": {"match": {field: {"query": text}}}}},
                {"knn": {"field": VECTOR_FIELD, "query_vector": list(map(float, vector)),
                         "k": window, "num_candidates": max(num_candidates, window)}},
            ],
            "rank_constant": rank_constant,
            "rank_window_size": window,
        }},
        "size": k,
        "_source": [DOC_ID_FIELD, TEXT_FIELD],
    }


def msearch_batches(client: Elasticsearch, target: Target, index: str,
                    bodies: Sequence[dict[str, Any]], batch: int = 64,
                    progress: Callable[[int], None] | None = None,
                    timings: dict[str, list[float]] | None = None) -> list[list[Hit]]:
    """Run the bodies in `_msearch` rounds of `batch`; results in input order.

    `timings`, when given, gets the wall seconds of each round under "batch" (the client's
    view, HTTP included) and each search's own `took` (milliseconds, Elasticsearch's
    server-side time) under "took_ms"."""
    import time

    out: list[list[Hit]] = []
    for start in range(0, len(bodies), batch):
        t0 = time.perf_counter()
        chunk = bodies[start:start + batch]
        searches: list[dict[str, Any]] = []
        for b in chunk:
            searches.append({"index": index})
            searches.append(b)
        with es_errors(target, f"search {index}"):
            resp = client.msearch(searches=searches)
        if timings is not None:
            timings.setdefault("batch", []).append(time.perf_counter() - t0)
            timings.setdefault("took_ms", []).extend(
                float(r["took"]) for r in resp["responses"] if "took" in r)
        for i, r in enumerate(resp["responses"]):
            if "error" in r:
                err = r["error"]
                reason = err.get("reason", err) if isinstance(err, dict) else err
                raise SearchBackendError(f"search {index}: query {start + i + 1} failed: {reason}")
            shards = r.get("_shards") or {}
            if shards.get("failed"):
                # a partial answer (a node holding the only copy of a shard is down) would
                # silently lower the metrics: refuse it
                fails = shards.get("failures") or [{}]
                why = fails[0].get("reason", {})
                why = (why.get("reason") or why.get("type")) if isinstance(why, dict) else why
                raise SearchBackendError(
                    f"search {index}: query {start + i + 1} was answered by only "
                    f"{shards.get('successful')} of {shards.get('total')} shards ({why}); "
                    "is a node down? Add replicas (index: {replicas: 1}) to survive that")
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


def fetch_vectors(client: Elasticsearch, target: Target, index: str,
                  batch: int = 500) -> tuple[list[str], np.ndarray]:
    """Every document's id and indexed vector (from `_source`), for in-process exact search.

    Label corpora are thousands of documents, so this is one short scroll; the vectors are the
    floats that were sent (int8 indexes quantise a copy, `_source` keeps the originals).
    """
    from elasticsearch import helpers

    ids: list[str] = []
    vecs: list[list[float]] = []
    with es_errors(target, f"read vectors of {index}"):
        for h in helpers.scan(client, index=index, size=batch,
                              query={"query": {"match_all": {}},
                                     "_source": [DOC_ID_FIELD, VECTOR_FIELD]}):
            src = h.get("_source") or {}
            if VECTOR_FIELD not in src:
                raise SearchBackendError(f"{index}: document {h['_id']} has no '{VECTOR_FIELD}' "
                                         "in _source, so exact search cannot be checked")
            ids.append(src.get(DOC_ID_FIELD, h["_id"]))
            vecs.append(src[VECTOR_FIELD])
    return ids, np.asarray(vecs, dtype=np.float32).reshape(len(ids), -1)
