"""Index building against the real node: mapping, bulk, alias swap, reuse, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from embedarena.data.types import Corpus, Query, QuerySet
from embedarena.errors import ConfigError, IndexMismatchError, SearchBackendError
from embedarena.evaluation.runner import run_bm25, run_dense
from embedarena.indexer.build import (
    Builder,
    IndexOptions,
    alias_target,
    dense_mapping,
    doc_uid,
    index_meta,
)
from embedarena.indexer.es import Target
from embedarena.names import index_slug, slug

from .fakes import BigramEmbedder

LABELS = ["甲状腺结节", "甲状腺癌", "胆管炎", "胰腺囊肿", "宫颈上皮内瘤变", "子宫肌瘤",
          "高血压", "糖尿病", "肝硬化", "乳腺癌", "thyroid nodule", "hypertension"]


def _target(es_node) -> Target:  # noqa: ANN001
    return Target([es_node.url], "basic", False)


def test_mapping_is_langchain_compatible_and_typed() -> None:
    m = dense_mapping(8, "cosine", IndexOptions(type="int8_hnsw", m=16), {"x": 1})
    props = m["properties"]
    assert props["vector"] == {"type": "dense_vector", "dims": 8, "index": True,
                               "similarity": "cosine",
                               "index_options": {"type": "int8_hnsw", "m": 16}}
    assert props["text"]["type"] == "text" and m["_meta"] == {"x": 1}


def test_flat_with_hnsw_params_is_refused() -> None:
    with pytest.raises(ConfigError, match="only apply to hnsw"):
        IndexOptions(type="flat", m=8).to_es()


def test_slug_and_doc_uid() -> None:
    assert index_slug("BGE Fine-tuned/v2") == "bge-fine-tuned-v2"
    assert index_slug("微调") and index_slug("微调") != index_slug("原始")
    assert slug("原数据") == "原数据" and slug("bge ft/v2") == "bge-ft-v2"
    assert slug("..") == "unnamed"
    assert doc_uid("<dbpedia:X>") == doc_uid("<dbpedia:X>") and len(doc_uid("a")) == 40


@pytest.mark.es
def test_build_reuse_rebuild_and_swap(es_node, es_prefix) -> None:  # noqa: ANN001
    client, target = es_node.client, _target(es_node)
    alias = f"{es_prefix}bigram"
    emb = BigramEmbedder()
    corpus = Corpus.from_labels(LABELS, source="labels")
    b = Builder(client, target, embed_batch=5, chunk_size=4)
    first = b.build_dense(alias, "bigram", emb, corpus, IndexOptions())
    assert not first.reused and first.docs == len(LABELS)
    assert client.count(index=alias)["count"] == len(LABELS)
    meta = index_meta(client, alias)
    assert meta is not None
    assert meta["fingerprint"] == emb.fingerprint
    assert meta["corpus_sha256"] == corpus.sha256() and meta["doc_count"] == len(LABELS)
    assert meta["similarity"] == "dot_product"  # normalised embedder

    calls = emb.calls
    again = b.build_dense(alias, "bigram", emb, corpus, IndexOptions())
    assert again.reused and again.index == first.index and emb.calls == calls

    bigger = Corpus.from_labels(LABELS + ["胃炎"], source="labels2")
    third = b.build_dense(alias, "bigram", emb, bigger, IndexOptions())
    assert not third.reused and third.index != first.index
    assert alias_target(client, alias) == third.index
    assert first.index in third.deleted_old
    assert not client.indices.exists(index=first.index)


@pytest.mark.es
def test_failed_rebuild_leaves_old_index_serving(es_node, es_prefix) -> None:  # noqa: ANN001
    client, target = es_node.client, _target(es_node)
    alias = f"{es_prefix}safe"
    corpus = Corpus.from_labels(LABELS)
    b = Builder(client, target, embed_batch=4, chunk_size=4)
    good = b.build_dense(alias, "m", BigramEmbedder(), corpus, IndexOptions())
    crashing = BigramEmbedder(salt="v2", fail_after=1)
    with pytest.raises(RuntimeError, match="crashed"):
        b.build_dense(alias, "m", crashing, corpus, IndexOptions())
    assert alias_target(client, alias) == good.index
    assert client.count(index=alias)["count"] == len(LABELS)
    leftovers = [i for i in client.indices.get(index=f"{alias}-*") if i != good.index]
    assert leftovers == []


@pytest.mark.es
def test_rejected_documents_are_counted_and_named(es_node, es_prefix) -> None:  # noqa: ANN001
    """dot_product needs unit vectors: ES rejects the others, and we say how many."""
    client, target = es_node.client, _target(es_node)
    alias = f"{es_prefix}bad"
    emb = BigramEmbedder(normalized=False)
    corpus = Corpus.from_labels(LABELS)
    with pytest.raises(SearchBackendError, match=r"\d+ of 12 documents failed to index"):
        Builder(client, target).build_dense(alias, "m", emb, corpus,
                                            IndexOptions(similarity="dot_product"))
    assert alias_target(client, alias) is None


@pytest.mark.es
def test_search_matches_exact_numpy_and_refuses_other_fingerprint(es_node, es_prefix
                                                                   ) -> None:  # noqa: ANN001
    client, target = es_node.client, _target(es_node)
    alias = f"{es_prefix}flat"
    emb = BigramEmbedder(dim=48)
    corpus = Corpus.from_labels(LABELS)
    Builder(client, target).build_dense(alias, "m", emb, corpus, IndexOptions(type="flat"))
    qs = QuerySet("q", [Query(str(i), t, {LABELS[i]: 1.0}) for i, t in
                        enumerate(["甲状腺结节癌", "肝硬化了", "thyroid", "高血压病"])])
    run = run_dense(client, target, alias, "m", emb, qs, k=5, msearch_batch=3)
    docs = emb.embed_documents(LABELS)
    for q, r in zip(qs, run.results):
        sims = docs @ emb.embed_queries([q.text])[0]
        expected = [LABELS[i] for i in np.argsort(-sims, kind="stable")[:5]]
        assert set(r.retrieved[:3]) == set(expected[:3]) or r.retrieved == expected
        assert r.retrieved[0] == expected[0]
        assert r.scores == sorted(r.scores, reverse=True)
    with pytest.raises(IndexMismatchError, match="fingerprint"):
        run_dense(client, target, alias, "m", BigramEmbedder(dim=48, salt="other"), qs, k=5)
    with pytest.raises(IndexMismatchError, match="another corpus"):
        run_dense(client, target, alias, "m", emb, qs, k=5, corpus_sha="0" * 64)


@pytest.mark.es
def test_bm25_row_handles_chinese(es_node, es_prefix) -> None:  # noqa: ANN001
    client, target = es_node.client, _target(es_node)
    alias = f"{es_prefix}bm25"
    corpus = Corpus.from_labels(LABELS)
    Builder(client, target).build_lexical(alias, "bm25", "standard", corpus, IndexOptions())
    qs = QuerySet("q", [Query("1", "我有胆管炎能买保险吗", {"胆管炎": 1.0})])
    run = run_bm25(client, target, alias, "bm25", "standard", qs, k=3)
    assert run.results[0].retrieved[0] == "胆管炎"


@pytest.mark.es
def test_langchain_elasticsearchstore_reads_our_index(es_node, es_prefix) -> None:  # noqa: ANN001
    """langchain-elasticsearch's ElasticsearchStore opens the index and agrees on top-k."""
    pytest.importorskip("langchain_elasticsearch")
    from langchain_core.embeddings import Embeddings
    from langchain_elasticsearch import ElasticsearchStore

    client, target = es_node.client, _target(es_node)
    alias = f"{es_prefix}lc"
    emb = BigramEmbedder(dim=48)
    Builder(client, target).build_dense(alias, "m", emb, Corpus.from_labels(LABELS),
                                        IndexOptions(type="flat"))

    class LC(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return emb.embed_documents(texts).tolist()

        def embed_query(self, text: str) -> list[float]:
            return emb.embed_queries([text])[0].tolist()

    store = ElasticsearchStore(index_name=alias, embedding=LC(), client=client)
    qs = QuerySet("q", [Query("1", "甲状腺的结节", {}), Query("2", "hypertension risk", {})])
    run = run_dense(client, target, alias, "m", emb, qs, k=4)
    for q, r in zip(qs, run.results):
        docs = store.similarity_search(q.text, k=4)
        assert [d.page_content for d in docs] == r.retrieved
        assert [d.metadata["doc_id"] for d in docs] == r.retrieved
