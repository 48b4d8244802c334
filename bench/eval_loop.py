"""Eval-loop speed: embedarena's batched encode + `_msearch` vs the seed's LangChain loop.

Both sides use the same Elasticsearch index, the same model (the bundled all-MiniLM-L6-v2 on
CPU) and the same queries (Cranfield, 225). The peer is the per-query loop of seed 004:
`ElasticsearchStore.similarity_search(query, k)` for each line of the query file. No embedding
cache on either side. Prints both timings, the ratio and whether the top-k lists agree.

    python bench/eval_loop.py      # inside scripts/env.sh's venv, after `embedarena es start`
"""

from __future__ import annotations

import os
import platform
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(k: int = 10, repeats: int = 3) -> None:
    from langchain_elasticsearch import ElasticsearchStore

    from embedarena.data.datasets import load_dataset
    from embedarena.embedders.langchain import as_langchain
    from embedarena.embedders.registry import create_embedder
    from embedarena.evaluation.runner import run_dense
    from embedarena.indexer.build import Builder, IndexOptions
    from embedarena.indexer.es import connect

    corpus, sets = load_dataset("cranfield")
    queries = next(iter(sets.values()))
    client, target = connect()
    emb = create_embedder("minilm")
    alias = "embedarena-bench-minilm"
    Builder(client, target).build_dense(alias, "minilm", emb, corpus, IndexOptions())
    store = ElasticsearchStore(index_name=alias, embedding=as_langchain(emb), client=client)
    texts = [q.text for q in queries]
    store.similarity_search(texts[0], k=k)  # warm both paths once
    run_dense(client, target, alias, "minilm", emb, queries, k=k)

    ours, peer = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run = run_dense(client, target, alias, "minilm", emb, queries, k=k)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        lc = [[d.metadata["doc_id"] for d in store.similarity_search(t, k=k)] for t in texts]
        peer.append(time.perf_counter() - t0)
    same = sum(r.retrieved == ids for r, ids in zip(run.results, lc))
    best_ours, best_peer = min(ours), min(peer)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}")
    print(f"queries: {len(texts)} (cranfield), corpus: {len(corpus)} docs, k={k}, "
          f"best of {repeats}")
    print(f"embedarena batched encode + _msearch: {best_ours:.2f} s "
          f"({len(texts) / best_ours:.0f} queries/s)")
    print(f"LangChain per-query similarity_search: {best_peer:.2f} s "
          f"({len(texts) / best_peer:.0f} queries/s)")
    print(f"speed-up: {best_peer / best_ours:.1f}x; identical top-{k}: {same}/{len(texts)}")


if __name__ == "__main__":
    main()
