"""Query set → `Run`: embed all queries in batches, then search with `_msearch` rounds.

This replaces the seed's per-query loop (`for line in query_file: db.similarity_search(...)`):
one batched encode and one `_msearch` per 64 queries instead of one model call and one HTTP
round trip per query (see bench/ for the measured ratio). `run_faiss` is the same with an
in-process faiss index (`index.backend: faiss`); `check_saved_runs` is `embedarena ann-check`:
a saved HNSW run against the exact search over its index's own vectors, overlap and metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embedarena.data.types import QuerySet
from embedarena.errors import ConfigError, IndexMismatchError, SearchBackendError
from embedarena.evaluation.costs import (
    api_counter,
    es_index_size,
    faiss_index_size,
    latency_meta,
)
from embedarena.evaluation.metrics import DEFAULT_METRICS, MetricSpec, RunMetrics, evaluate
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
from embedarena.progress import current

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from embedarena.embedders.base import Embedder
    from embedarena.indexer.faiss_index import FaissIndex


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


QUERY_BATCH = 256


def embed_query_set(embedder: Embedder, queries: QuerySet, model: str,
                    timings: list[tuple[int, float]] | None = None) -> np.ndarray:
    """All query vectors, `QUERY_BATCH` at a time, checked; an embedder failure names the
    batch, its query range and first query id. `timings` gets (size, seconds) per batch."""
    from embedarena.embedders.base import embed_in_batches

    return embed_in_batches(embedder, "query", [q.text for q in queries],
                            [q.qid for q in queries], QUERY_BATCH, name=model,
                            timings=timings)


def _embed_timed(embedder: Embedder, queries: QuerySet, model: str
                 ) -> tuple[np.ndarray, list[tuple[int, float]], dict[str, Any] | None]:
    """Query vectors, their batch timings and, for API models, the tokens this sent."""
    counter = api_counter(embedder)
    before = counter.tokens_sent if counter is not None else 0
    timings: list[tuple[int, float]] = []
    vectors = embed_query_set(embedder, queries, model, timings)
    api = None
    if counter is not None:
        api = {"tokens_sent": int(counter.tokens_sent - before),
               "tokens_counted_with": "tiktoken" if counter.tokens_exact
               else "utf-8 bytes (tiktoken unavailable: an upper bound)"}
    return vectors, timings, api


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
    vectors, embed_times, api = _embed_timed(embedder, queries, model)
    t_embed = time.monotonic() - t0
    bodies = dense_bodies(vectors, k, num_candidates)
    t1 = time.monotonic()
    search_times: dict[str, list[float]] = {}
    hits = msearch_batches(client, target, alias, bodies, msearch_batch, progress,
                           timings=search_times)
    t_search = time.monotonic() - t1
    run = to_run(model, queries, hits, {
        "index": meta["index"], "alias": alias, "k": k, "num_candidates": num_candidates,
        "search": "knn", "fingerprint": embedder.fingerprint,
        "corpus_sha256": meta.get("corpus_sha256"),  # what the index holds (compare checks it)
        "index_options": meta.get("index_options"), "similarity": meta.get("similarity"),
        "seconds_embed": round(t_embed, 3), "seconds_search": round(t_search, 3),
        "latency": latency_meta(
            embed_times, search_times.get("batch", []), search_times.get("took_ms"),
            _sizes(len(bodies), msearch_batch),
            "elasticsearch took per search in _msearch rounds (server side)"),
        "index_size": es_index_size(client, target, meta["index"]),
        **({"api": api} if api is not None else {}),
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


def run_faiss(index: FaissIndex, ids: Sequence[str], texts: Sequence[str], model: str,
              embedder: Embedder, queries: QuerySet, k: int,
              progress: Callable[[int], None] | None = None, check_ann: bool = True) -> Run:
    """`run_dense` with an in-process faiss index over the corpus (`ids`/`texts` by position):
    the same `Run`, scores on Elasticsearch's scale. Approximate types (hnsw, ivf) record
    their overlap with the exact search on the same vectors (`check_ann`), as HNSW rows on
    Elasticsearch do."""
    from embedarena.indexer.faiss_index import es_scores

    t0 = time.monotonic()
    vectors, embed_times, api = _embed_timed(embedder, queries, model)
    t_embed = time.monotonic() - t0
    t1 = time.monotonic()
    hits: list[list[Hit]] = []
    rounds: list[float] = []
    # rounds of FAISS_SEARCH_BATCH queries, so per-round times compare with _msearch rounds
    for s in range(0, len(vectors), FAISS_SEARCH_BATCH):
        t_round = time.perf_counter()
        res = index.search(vectors[s:s + FAISS_SEARCH_BATCH], k)
        scores = es_scores(res.scores, index.similarity)
        rounds.append(time.perf_counter() - t_round)
        hits.extend([Hit(ids[j], float(sc), texts[j]) for sc, j in zip(srow, irow) if j >= 0]
                    for srow, irow in zip(scores, res.indices))
    t_search = time.monotonic() - t1
    if progress is not None:
        progress(len(queries))
    run = to_run(model, queries, hits, {
        "backend": "faiss", "index_type": index.description, "faiss": index.settings(),
        "k": k, "search": "knn", "fingerprint": embedder.fingerprint,
        "similarity": index.similarity,
        "seconds_embed": round(t_embed, 3), "seconds_search": round(t_search, 3),
        "latency": latency_meta(
            embed_times, rounds, None, _sizes(len(vectors), FAISS_SEARCH_BATCH),
            "faiss search round time / queries in the round (in process)"),
        "index_size": faiss_index_size(index.memory_bytes(), index.n),
        **({"api": api} if api is not None else {}),
    })
    if check_ann and not index.exact and len(queries):
        t2 = time.monotonic()
        exact = index.exact_search(vectors, k)
        out = ann_overlap([[h.doc_id for h in hs] for hs in hits],
                          [[ids[j] for j in row] for row in exact.indices], k)
        out.update({"exact": f"{exact.backend} exact search over the same vectors",
                    "seconds": round(time.monotonic() - t2, 3)})
        run.meta["ann_check"] = out
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
    search_times: dict[str, list[float]] = {}
    hits = msearch_batches(client, target, alias,
                           [bm25_body(t, k, chain.field) for t in texts],
                           msearch_batch, progress, timings=search_times)
    return to_run(model, queries, hits, {
        "index": meta["index"], "alias": alias, "k": k, "search": "bm25",
        "analyzer": analyzer, "analysis": chain.fingerprint_payload(),
        "fingerprint": meta["fingerprint"], "corpus_sha256": meta.get("corpus_sha256"),
        "seconds_search": round(time.monotonic() - t1, 3),
        "latency": latency_meta(
            [], search_times.get("batch", []), search_times.get("took_ms"),
            _sizes(len(texts), msearch_batch),
            "elasticsearch took per search in _msearch rounds (server side)"),
        "index_size": es_index_size(client, target, meta["index"]),
    })


FAISS_SEARCH_BATCH = 64


def _sizes(n: int, batch: int) -> list[int]:
    """Sizes of the rounds `n` items take at `batch` a time."""
    return [min(batch, n - s) for s in range(0, n, batch)]


ANN_TYPES = ("hnsw", "int8_hnsw", "int4_hnsw", "bbq_hnsw", "bbq_disk")


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

    Done in process (`embedarena.indexer.exact`: faiss Flat where installed, else torch or
    numpy, one tie rule), not ES `script_score`: that needs the lang-painless module, which a
    minimal node lacks, and label corpora of thousands fit in memory in milliseconds.
    """
    t0 = time.monotonic()
    ids, exact, where = exact_top(client, target, index, query_vectors, k, similarity)
    out = ann_overlap(approx, [[ids[j] for j in row] for row in exact.indices], k)
    out.update({"exact": f"{where} exact search over the index's vectors",
                "seconds": round(time.monotonic() - t0, 3)})
    return out


def exact_top(client: Elasticsearch, target: Target, index: str, query_vectors: np.ndarray,
              k: int, similarity: str) -> tuple[list[str], Any, str]:
    """(document ids, the exact top k over the index's own vectors, where it ran)."""
    from embedarena.indexer.exact import ExactIndex

    ids, doc_vecs = fetch_vectors(client, target, index)
    exact = ExactIndex(doc_vecs, similarity).search(query_vectors, k)
    return ids, exact, exact.backend


# -- `embedarena ann-check`: saved HNSW runs against the exact search ------------------------
@dataclass
class AnnRunCheck:
    """One saved HNSW run next to the exact run on the same query vectors."""

    model: str
    query_set: str
    run_dir: Path
    index: str
    index_type: str
    k: int
    num_candidates: int | None
    overlap: dict[str, Any]
    exact: str
    """Where the exact search ran (faiss-cpu, faiss-gpu, ...)."""
    metrics: dict[str, tuple[float, float]] = field(default_factory=dict)
    """metric → (mean of the HNSW run, mean of the exact run), in the run's metric order."""

    def delta(self, metric: str) -> float:
        """exact minus HNSW: what the approximation costs (positive: HNSW scores lower)."""
        a, e = self.metrics[metric]
        return e - a

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "query_set": self.query_set, "run_dir": str(self.run_dir),
                "index": self.index, "index_type": self.index_type, "k": self.k,
                "num_candidates": self.num_candidates, "overlap": self.overlap,
                "exact": self.exact,
                "metrics": {m: {"hnsw": a, "exact": e, "delta": e - a}
                            for m, (a, e) in self.metrics.items()}}


def skip_reason(meta: dict[str, Any]) -> str | None:
    """Why a saved run has no ANN check to do (None: it is a dense HNSW run on a node)."""
    if meta.get("backend") == "faiss":
        return "faiss backend: checked in the run itself (meta.json ann_check)" \
            if "ann_check" in meta else "faiss backend, exact index"
    if meta.get("search") != "knn":
        return f"not a dense kNN run (search: {meta.get('search', '?')})"
    kind = str((meta.get("index_options") or {}).get("type", ""))
    if kind not in ANN_TYPES:
        return f"index type {kind or '?'} is exact already"
    if not meta.get("model_settings") or not meta.get("fingerprint") or not meta.get("index"):
        return "meta.json lacks the model settings, fingerprint or index of the run"
    return None


def check_saved_runs(run_dirs: Sequence[Path], connect: Callable[[], tuple[Elasticsearch,
                                                                           Target]],
                     metrics: str | Sequence[str] | None = None, cache: bool = True
                     ) -> tuple[list[AnnRunCheck], list[tuple[Path, str]]]:
    """Each saved dense HNSW run against the exact search over its index's own vectors
    (read back from Elasticsearch), on the query vectors the run's model gives (embedding
    cache: no re-encoding), scored with the run's own metrics (metrics.json) or `metrics`.

    Returns the checks and the (run directory, reason) of runs with nothing to check.
    Connects only when some run needs it.
    """
    checks: list[AnnRunCheck] = []
    skipped: list[tuple[Path, str]] = []
    es: tuple[Elasticsearch, Target] | None = None
    with current().task("ann-check", total=len(run_dirs)) as task:
        for d in run_dirs:
            run = Run.load(d)
            why = skip_reason(run.meta)
            if why is not None:
                skipped.append((d, why))
            else:
                if es is None:
                    es = connect()
                checks.append(_check_run(d, run, es[0], es[1], metrics, cache))
            task.advance(1)
    return checks, skipped


def _check_run(run_dir: Path, run: Run, client: Elasticsearch, target: Target,
               metrics: str | Sequence[str] | None, cache: bool) -> AnnRunCheck:
    meta = run.meta
    specs = _run_specs(run_dir, metrics)
    index = _index_with_run_vectors(client, target, run, run_dir)
    embedder = _run_embedder(meta, run_dir, cache)
    k = int(meta.get("k") or max(len(r.retrieved) for r in run.results))
    similarity = str(meta.get("similarity") or "cosine")
    vectors = embedder.embed_queries([r.query for r in run.results])
    ids, exact, where = exact_top(client, target, index, vectors, k, similarity)
    from embedarena.indexer.faiss_index import es_scores

    scores = es_scores(exact.scores, similarity)
    exact_run = Run(run.model, run.query_set, [
        QueryResult(r.qid, r.query, dict(r.gold), [ids[j] for j in row if j >= 0],
                    [float(x) for x, j in zip(srow, row) if j >= 0])
        for r, row, srow in zip(run.results, exact.indices, scores)])
    approx_m, exact_m = evaluate(run, specs), evaluate(exact_run, specs)
    return AnnRunCheck(
        model=run.model, query_set=run.query_set, run_dir=run_dir, index=index,
        index_type=str((meta.get("index_options") or {}).get("type", "")), k=k,
        num_candidates=meta.get("num_candidates"),
        overlap=ann_overlap([r.retrieved for r in run.results],
                            [r.retrieved for r in exact_run.results], k),
        exact=where,
        metrics={str(s): (approx_m.mean(s), exact_m.mean(s)) for s in specs})


def _run_specs(run_dir: Path, metrics: str | Sequence[str] | None) -> list[MetricSpec]:
    from embedarena.evaluation.metrics import parse_metrics

    if metrics:
        return parse_metrics(metrics)
    saved = run_dir / "metrics.json"
    if saved.is_file():
        specs = RunMetrics.load(saved).specs
        if specs:
            return specs
    return parse_metrics(DEFAULT_METRICS)


def _index_with_run_vectors(client: Elasticsearch, target: Target, run: Run,
                            run_dir: Path) -> str:
    """The index the run searched, or the alias's current one when that holds the same
    vectors (same model fingerprint and corpus): exact answers depend on vectors only."""
    name, alias = str(run.meta["index"]), run.meta.get("alias")
    with es_errors(target, f"index {name}"):
        if client.indices.exists(index=name):
            return name
        now = index_meta(client, str(alias)) if alias else None
    if now is not None and now.get("fingerprint") == run.meta.get("fingerprint") and (
            run.meta.get("corpus_sha256") in (None, now.get("corpus_sha256"))):
        return str(now["index"])
    raise IndexMismatchError(f"{run_dir}: its index {name} is gone and alias {alias} holds "
                             "no index of the same model and corpus; run the experiment again")


def _run_embedder(meta: dict[str, Any], run_dir: Path, cache: bool) -> Embedder:
    """The run's model from its meta.json (through the embedding cache: the query vectors of
    the run are found there, not recomputed), refused if its fingerprint moved."""
    from embedarena.embedders.base import EmbedderSpec
    from embedarena.embedders.registry import create_embedder, load_builtins
    from embedarena.specs import parse_spec

    load_builtins()
    spec = parse_spec(meta["model_settings"])
    if not isinstance(spec, EmbedderSpec):
        raise ConfigError(f"{run_dir}: model_settings of a kNN run is not an embedder "
                          f"({spec.type})")
    emb: Embedder = create_embedder(spec)
    if cache:
        from embedarena.embedders.cache import CachedEmbedder

        emb = CachedEmbedder(emb)
    if emb.fingerprint != meta["fingerprint"]:
        raise IndexMismatchError(f"{run_dir}: the model {spec.name} now has fingerprint "
                                 f"{emb.fingerprint[:16]}…, the run was made with "
                                 f"{str(meta['fingerprint'])[:16]}…; run the experiment again")
    return emb
