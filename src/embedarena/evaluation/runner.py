"""Query set → `Run`: embed all queries in batches, then search with `_msearch` rounds.

This replaces the seed's per-query loop (`for line in query_file: db.similarity_search(...)`):
one batched encode and one `_msearch` per 64 queries instead of one model call and one HTTP
round trip per query (see bench/ for the measured ratio).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from embedarena.data.types import QuerySet
from embedarena.evaluation.run import QueryResult, Run
from embedarena.indexer.build import check_compatible, index_meta, lexical_fingerprint
from embedarena.indexer.es import Target, es_errors
from embedarena.indexer.search import Hit, bm25_body, dense_bodies, msearch_batches

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from embedarena.embedders.base import Embedder


def _to_run(model: str, queries: QuerySet, hits: list[list[Hit]],
            meta: dict[str, Any]) -> Run:
    if len(hits) != len(queries):
        raise RuntimeError(f"{len(hits)} results for {len(queries)} queries")
    results = []
    for q, hs in zip(queries, hits):
        ids = [h.doc_id for h in hs]
        texts = [h.text for h in hs]
        results.append(QueryResult(
            qid=q.qid, query=q.text, gold=dict(q.gold), retrieved=ids,
            scores=[h.score for h in hs], texts=None if texts == ids else texts,
        ))
    return Run(model=model, query_set=queries.name, results=results, meta=meta)


def run_dense(client: Elasticsearch, target: Target, alias: str, model: str,
              embedder: Embedder, queries: QuerySet, k: int, num_candidates: int = 100,
              msearch_batch: int = 64, progress: Callable[[int], None] | None = None,
              corpus_sha: str | None = None) -> Run:
    """Search a dense index with every query; refuses an index built by another fingerprint."""
    with es_errors(target, f"index {alias}"):
        meta = index_meta(client, alias)
    if meta is None:
        from embedarena.errors import SearchBackendError

        raise SearchBackendError(f"no index '{alias}' at {target.display}: build it first "
                                 "with `embedarena index build`")
    check_compatible(meta, embedder.fingerprint, alias, corpus_sha)
    t0 = time.monotonic()
    vectors = embedder.embed_queries([q.text for q in queries])
    t_embed = time.monotonic() - t0
    bodies = dense_bodies(vectors, k, num_candidates)
    t1 = time.monotonic()
    hits = msearch_batches(client, target, alias, bodies, msearch_batch, progress)
    t_search = time.monotonic() - t1
    return _to_run(model, queries, hits, {
        "index": meta["index"], "alias": alias, "k": k, "num_candidates": num_candidates,
        "search": "knn", "fingerprint": embedder.fingerprint,
        "index_options": meta.get("index_options"), "similarity": meta.get("similarity"),
        "seconds_embed": round(t_embed, 3), "seconds_search": round(t_search, 3),
    })


def run_bm25(client: Elasticsearch, target: Target, alias: str, model: str, analyzer: str,
             queries: QuerySet, k: int, msearch_batch: int = 64,
             progress: Callable[[int], None] | None = None,
             corpus_sha: str | None = None) -> Run:
    with es_errors(target, f"index {alias}"):
        meta = index_meta(client, alias)
    if meta is None:
        from embedarena.errors import SearchBackendError

        raise SearchBackendError(f"no index '{alias}' at {target.display}: build it first")
    check_compatible(meta, lexical_fingerprint(analyzer), alias, corpus_sha)
    t1 = time.monotonic()
    hits = msearch_batches(client, target, alias, [bm25_body(q.text, k) for q in queries],
                           msearch_batch, progress)
    return _to_run(model, queries, hits, {
        "index": meta["index"], "alias": alias, "k": k, "search": "bm25",
        "analyzer": analyzer, "fingerprint": meta["fingerprint"],
        "seconds_search": round(time.monotonic() - t1, 3),
    })
