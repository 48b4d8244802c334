"""Query set → `Run`: embed all queries in batches, then search with `_msearch` rounds.

This replaces the seed's per-query loop (`for line in query_file: db.similarity_search(...)`):
one batched encode and one `_msearch` per 64 queries instead of one model call and one HTTP
round trip per query (see bench/ for the measured ratio).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from embedarena.data.types import QuerySet
from embedarena.errors import SearchBackendError
from embedarena.evaluation.run import QueryResult, Run
from embedarena.indexer.analysis import get_chain
from embedarena.indexer.build import check_compatible, index_meta, lexical_fingerprint
from embedarena.indexer.es import Target, es_errors
from embedarena.indexer.search import (
    Hit,
    bm25_body,
    dense_bodies,
    fetch_vectors,
    msearch_batches,
)

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from embedarena.embedders.base import Embedder


def to_run(model: str, queries: QuerySet, hits: list[list[Hit]],
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
              corpus_sha: str | None = None, check_ann: bool = True) -> Run:
    """Search a dense index with every query; refuses an index built by another fingerprint.

    For HNSW indexes (`check_ann`) the same query vectors also go through exact search, and
    `meta["ann_check"]` records the top-k overlap, so approximation error is never silently
    part of a model comparison.
    """
    with es_errors(target, f"index {alias}"):
        meta = index_meta(client, alias)
    if meta is None:
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
    run = to_run(model, queries, hits, {
        "index": meta["index"], "alias": alias, "k": k, "num_candidates": num_candidates,
        "search": "knn", "fingerprint": embedder.fingerprint,
        "index_options": meta.get("index_options"), "similarity": meta.get("similarity"),
        "seconds_embed": round(t_embed, 3), "seconds_search": round(t_search, 3),
    })
    index_type = str((meta.get("index_options") or {}).get("type", ""))
    if check_ann and index_type in ANN_TYPES and len(queries):
        try:
            run.meta["ann_check"] = ann_check(
                client, target, meta["index"], vectors, [[h.doc_id for h in hs] for hs in hits],
                k, str(meta.get("similarity") or "cosine"))
        except SearchBackendError as e:
            # the run itself is fine; the missing check is recorded and shown as n/a
            run.meta["ann_check"] = {"k": k, "overlap": None, "error": str(e)}
    return run


def run_bm25(client: Elasticsearch, target: Target, alias: str, model: str, analyzer: str,
             queries: QuerySet, k: int, msearch_batch: int = 64,
             progress: Callable[[int], None] | None = None,
             corpus_sha: str | None = None) -> Run:
    with es_errors(target, f"index {alias}"):
        meta = index_meta(client, alias)
    if meta is None:
        raise SearchBackendError(f"no index '{alias}' at {target.display}: build it first")
    check_compatible(meta, lexical_fingerprint(analyzer), alias, corpus_sha)
    chain = get_chain(analyzer)
    t1 = time.monotonic()
    # client-side chains segment the query with the same function that segmented documents
    texts = [chain.segment(q.text) if chain.client_side else q.text for q in queries]
    hits = msearch_batches(client, target, alias,
                           [bm25_body(t, k, chain.field) for t in texts],
                           msearch_batch, progress)
    return to_run(model, queries, hits, {
        "index": meta["index"], "alias": alias, "k": k, "search": "bm25",
        "analyzer": analyzer, "analysis": chain.fingerprint_payload(),
        "fingerprint": meta["fingerprint"],
        "seconds_search": round(time.monotonic() - t1, 3),
    })


ANN_TYPES = ("hnsw", "int8_hnsw", "int4_hnsw", "bbq_hnsw")


def ann_overlap(approx: list[list[str]], exact: list[list[str]], k: int) -> dict[str, Any]:
    """Mean |ANN top-k ∩ exact top-k| / |exact top-k| over queries, with the worst query."""
    per = []
    for a, e in zip(approx, exact, strict=True):
        want = set(e[:k])
        per.append(len(want & set(a[:k])) / len(want) if want else 1.0)
    arr = np.asarray(per, dtype=np.float64)
    return {"k": k, "overlap": round(float(arr.mean()), 6) if len(arr) else None,
            "min": round(float(arr.min()), 6) if len(arr) else None,
            "queries_below_1": int((arr < 1).sum()), "queries": len(per)}


def ann_check(client: Elasticsearch, target: Target, index: str, query_vectors: np.ndarray,
              approx: list[list[str]], k: int, similarity: str) -> dict[str, Any]:
    """Exact search in-process over the index's own vectors, compared with its HNSW answers.

    Done in process (`embedarena.indexer.exact`, numpy: stable tie order), not ES
    `script_score`: that needs the lang-painless module, which a minimal node lacks, and label
    corpora of thousands fit in memory in milliseconds.
    """
    from embedarena.indexer.exact import exact_search

    t0 = time.monotonic()
    ids, doc_vecs = fetch_vectors(client, target, index)
    top = exact_search(query_vectors, doc_vecs, k, similarity, backend="numpy").indices
    exact = [[ids[j] for j in row] for row in top]
    out = ann_overlap(approx, exact, k)
    out.update({"exact": "numpy brute force over the index's vectors",
                "seconds": round(time.monotonic() - t0, 3)})
    return out
