"""What a row costs beside what it scores: latencies, index size, API tokens and money.

Everything here is recorded in a run's meta.json (`latency`, `index_size`, `api`, `cost`),
measured on the run itself, never asserted: the numbers depend on the machine and its load.

- latency: `embed_query` / `embed_batch` are the query-encoding times (per query: each batch's
  time divided by its size; per batch: `QUERY_BATCH` queries), `search_query` is
  Elasticsearch's own `took` of each search in an `_msearch` (server side, milliseconds) or,
  for faiss, each round's time divided by its size, `search_batch` the wall time of each
  `_msearch` round (client side, HTTP included) or faiss search call.
- index_size: `indices.stats` primary store bytes over its document count (Elasticsearch), or
  the in-memory index (faiss); vectors, graph and, for Elasticsearch, `_source` all count.
- api / cost: tokens the API adapters sent (`tokens_sent`, counted with tiktoken as they plan
  requests), priced from the experiment's `prices` (USD per 1M tokens, keyed by deployment or
  model name). No price is built in: a row without one has no `cost`, which is not zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from embedarena.indexer.es import Target


def latency(seconds: Sequence[float], per: Sequence[int] | None = None) -> dict[str, Any] | None:
    """p50/p95/mean in milliseconds of the samples (each divided by `per[i]` when given: the
    time per item of a batch), with their count; None without samples."""
    import numpy as np

    if not len(seconds):
        return None
    arr = np.asarray(seconds, dtype=np.float64) * 1000.0
    if per is not None:
        arr = arr / np.maximum(np.asarray(per, dtype=np.float64), 1.0)
    p50, p95 = np.percentile(arr, [50, 95])
    return {"p50_ms": round(float(p50), 4), "p95_ms": round(float(p95), 4),
            "mean_ms": round(float(arr.mean()), 4), "n": len(arr)}


def latency_meta(embed: Sequence[tuple[int, float]], search_batch: Sequence[float],
                 search_query_ms: Sequence[float] | None = None,
                 search_sizes: Sequence[int] | None = None,
                 search_source: str = "") -> dict[str, Any]:
    """The run's `meta["latency"]` from the batch timings of the embedder and the search."""
    sizes = [n for n, _ in embed]
    secs = [t for _, t in embed]
    out: dict[str, Any] = {
        "embed_query": latency(secs, sizes), "embed_batch": latency(secs),
        "embed_batch_size": max(sizes) if sizes else None,
        "search_batch": latency(search_batch),
        "search_batch_size": max(search_sizes) if search_sizes else None,
    }
    if search_query_ms is not None:
        out["search_query"] = latency([ms / 1000.0 for ms in search_query_ms])
    elif search_sizes is not None:
        out["search_query"] = latency(search_batch, search_sizes)
    out["search_query_source"] = search_source
    return {k: v for k, v in out.items() if v is not None}


def es_index_size(client: Elasticsearch, target: Target, index: str) -> dict[str, Any]:
    """Primary store size of an Elasticsearch index and its bytes per document (= vector for a
    dense index), from `indices.stats` after a refresh."""
    from embedarena.indexer.es import es_errors

    with es_errors(target, f"stats of {index}"):
        resp = client.indices.stats(index=index, metric=["store", "docs"])
    stats = dict(resp)["indices"]
    entry = next(iter(stats.values())) if len(stats) == 1 else stats[index]
    prim = entry["primaries"]
    size = int(prim["store"]["size_in_bytes"])
    docs = int(prim["docs"]["count"])
    return {"bytes": size, "docs": docs,
            "bytes_per_vector": round(size / docs, 1) if docs else None,
            "source": "elasticsearch indices.stats primaries.store (vectors, graph, _source)"}


def faiss_index_size(nbytes: int, n: int) -> dict[str, Any]:
    return {"bytes": int(nbytes), "docs": int(n),
            "bytes_per_vector": round(nbytes / n, 1) if n else None,
            "source": "faiss index in memory"}


def api_counter(embedder: Any) -> Any:
    """The adapter under caches and wrappers that counts `tokens_sent`, or None."""
    seen = 0
    while embedder is not None and seen < 8:
        if isinstance(getattr(embedder, "tokens_sent", None), int):
            return embedder
        embedder = getattr(embedder, "inner", None)
        seen += 1
    return None


def price_keys(spec: Any) -> list[str]:
    """Names a price table may use for a model entry, most specific first: the entry's name,
    an Azure deployment, the model name, the recognised OpenAI model family."""
    keys = [getattr(spec, "name", None), getattr(spec, "deployment", None),
            getattr(spec, "model", None)]
    family = getattr(spec, "model_family", None)
    if callable(family):
        keys.append(family())
    return list(dict.fromkeys(k for k in keys if isinstance(k, str) and k))


def cost_meta(tokens: int, spec: Any, prices: Mapping[str, float] | None) -> dict[str, Any] | None:
    """`meta["cost"]` for `tokens` at the first price `price_keys(spec)` finds, else None."""
    if not prices:
        return None
    for key in price_keys(spec):
        if key in prices:
            per_m = float(prices[key])
            return {"tokens": int(tokens), "usd_per_1m_tokens": per_m, "price_key": key,
                    "usd": tokens * per_m / 1e6}
    return None
