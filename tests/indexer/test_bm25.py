"""In-process BM25 scores like the Elasticsearch BM25 row: Lucene's length norm, the formula,
and, on the real node over T2Ranking, the same terms in the index and the same top 10 with the
same scores for every chain that runs there."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from embedarena.data.datasets import load_dataset
from embedarena.data.types import Corpus
from embedarena.errors import ConfigError
from embedarena.indexer.analysis import get_chain
from embedarena.indexer.bm25 import NORM_LENGTHS, LocalBM25, byte4_to_int, int_to_byte4
from embedarena.indexer.build import Builder, IndexOptions, doc_uid
from embedarena.indexer.es import Target
from embedarena.indexer.fields import TEXT_FIELD
from embedarena.indexer.search import bm25_body, msearch_batches

#: field length -> the length Lucene's norm byte keeps (explain's "dl, length of field
#: (approximate)" on the node, checked in test_norms_and_statistics_match_explain)
KNOWN_NORMS = {0: 0, 1: 1, 23: 23, 24: 24, 39: 39, 40: 40, 41: 40, 42: 42, 55: 54, 56: 56,
               57: 56, 100: 96, 255: 248, 1000: 984, 10282: 10264, 2**31 - 1: 2013265944}


def test_norm_encoding_known_values() -> None:
    for length, kept in KNOWN_NORMS.items():
        assert byte4_to_int(int_to_byte4(length)) == kept, length
    assert [int_to_byte4(n) for n in range(24)] == list(range(24))
    assert int_to_byte4(2**31 - 1) == 255 and int_to_byte4(40) == 40
    codes = [int_to_byte4(n) for n in range(5000)]
    assert codes == sorted(codes)  # monotone: a longer field never gets a smaller norm
    assert all(int_to_byte4(byte4_to_int(c)) == c for c in range(256))
    assert NORM_LENGTHS[int_to_byte4(1000)] == 984
    with pytest.raises(ValueError):
        int_to_byte4(-1)


def test_formula_ties_and_repeated_query_terms() -> None:
    texts = ["甲状腺结节", "甲状腺癌", "结节", "结节", "", "。", "甲状腺结节病甲状腺"]
    bm = LocalBM25(texts)
    assert bm.doc_count == 5  # "" and "。" have no terms: not in N nor avgdl, as in Lucene
    avgdl = (5 + 4 + 2 + 2 + 9) / 5

    def expected(query_counts: dict[str, int], doc: str) -> float:
        total = 0.0
        for term, n in query_counts.items():
            df = sum(term in t for t in texts)
            tf = doc.count(term)
            if tf:
                idf = math.log(1 + (5 - df + 0.5) / (df + 0.5))
                total += n * 2.2 * idf * tf / (tf + 1.2 * (0.25 + 0.75 * len(doc) / avgdl))
        return total

    hits = bm.search("结节", 10)
    assert [i for i, _ in hits] == [2, 3, 0, 6]  # equal scores: position order
    assert hits[0][1] == hits[1][1]
    for i, s in hits:
        assert s == pytest.approx(expected({"结": 1, "节": 1}, texts[i]), rel=1e-6)
        assert bm.score("结节", texts[i]) == s
    # a repeated query term counts once per repeat, as the node's match query does
    assert bm.score("结结节", texts[0]) == pytest.approx(expected({"结": 2, "节": 1}, texts[0]),
                                                        rel=1e-6)
    assert bm.search("肝", 5) == [] and bm.score("肝硬化", "肝硬化") == 0.0
    assert bm.search("结节", 1) == [(2, hits[0][1])]


def test_chain_without_in_process_tokenizer_is_refused() -> None:
    with pytest.raises(ConfigError, match="cjk-bigram"):
        LocalBM25(["甲状腺"], "cjk-bigram")
    assert LocalBM25(["甲状腺 结节"], "whitespace").search("结节", 1) == [(0, pytest.approx(
        0.2876821, rel=1e-6))]


# -- against the node ------------------------------------------------------------------------
def _target(es_node) -> Target:  # noqa: ANN001
    return Target([es_node.url], "basic", False)


def _explain_value(node: dict, prefix: str) -> float | None:  # type: ignore[type-arg]
    if node["description"].startswith(prefix):
        return float(node["value"])
    for child in node.get("details", []):
        found = _explain_value(child, prefix)
        if found is not None:
            return found
    return None


@pytest.mark.es
def test_norms_and_statistics_match_explain(es_node, es_prefix: str) -> None:  # noqa: ANN001
    client = es_node.client
    lengths = [*range(1, 46), 55, 56, 57, 63, 64, 100, 255, 256, 1000, 10282]
    texts = ["w " * n for n in lengths] + ["", "。"]
    corpus = Corpus([f"len-{i}" for i in range(len(texts))], texts)
    alias = f"{es_prefix}norms"
    Builder(client, _target(es_node)).build_lexical(alias, "bm25", "standard", corpus,
                                                     IndexOptions())
    bm = LocalBM25(texts)
    for i, n in enumerate(lengths):
        exp = client.explain(index=alias, id=doc_uid(f"len-{i}"),
                             query={"match": {TEXT_FIELD: "w"}})["explanation"]
        assert _explain_value(exp, "dl,") == byte4_to_int(int_to_byte4(n)), n
        assert _explain_value(exp, "avgdl,") == pytest.approx(float(bm.avgdl), rel=1e-7)
        assert _explain_value(exp, "N,") == bm.doc_count == len(lengths)
        assert np.float32(exp["value"]) == np.float32(bm.score("w", texts[i]))
    for length, kept in KNOWN_NORMS.items():
        if length in lengths:
            assert byte4_to_int(int_to_byte4(length)) == kept


def _index_terms(client, index: str, field: str, ids: list[str]) -> list[list[str]]:  # noqa: ANN001
    """The terms the index holds for each document, in position order (term vectors)."""
    held: dict[str, list[str]] = {}
    uids = [doc_uid(d) for d in ids]
    for start in range(0, len(uids), 200):
        resp = client.mtermvectors(index=index, ids=uids[start:start + 200], fields=[field],
                                   positions=True, offsets=False, payloads=False,
                                   term_statistics=False, field_statistics=False)
        for doc in resp["docs"]:  # not necessarily in request order
            terms = doc.get("term_vectors", {}).get(field, {}).get("terms", {})
            at = sorted((tok["position"], term) for term, v in terms.items()
                        for tok in v["tokens"])
            held[doc["_id"]] = [term for _, term in at]
    return [held[u] for u in uids]


def _mismatches(es: list[tuple[int, float]], local: list[tuple[int, float]],
                bm: LocalBM25, query: str, texts: list[str]) -> int:
    """Hits that differ beyond a permutation of equal scores: an ES hit whose local score is
    not its ES score, or a rank whose local score is not the ES score at that rank."""
    bad = abs(len(es) - len(local))
    for (doc, score), (_, local_score) in zip(es, local):
        bad += bm.score(query, texts[doc]) != pytest.approx(score, rel=1e-4)
        bad += local_score != pytest.approx(score, rel=1e-4)
    return bad


@pytest.mark.es
@pytest.mark.parametrize("name", ["standard", "jieba", "jieba-search", "bigram"])
def test_local_bm25_ranks_like_the_es_row(es_node, es_prefix: str, shared_data: Path,  # noqa: ANN001
                                          name: str) -> None:
    if name.startswith("jieba"):
        pytest.importorskip("jieba")
    client, target = es_node.client, _target(es_node)
    corpus, sets = load_dataset("t2rank", shared_data)
    chain = get_chain(name)
    alias = f"{es_prefix}bm25-{name}"
    built = Builder(client, target).build_lexical(alias, "bm25", name, corpus, IndexOptions())
    texts = list(corpus.texts)
    bm = LocalBM25(texts, name)

    # 1. the same terms: every document as the index holds it, every query as the node
    # analyses it (client-side chains send `segment(q)`, ES-analysed ones the raw text)
    step = 3 if name.startswith("jieba") else 1  # jieba is slow: every third document
    held = _index_terms(client, built.index, chain.field, corpus.ids[::step])
    bad_docs = [i for i, terms in zip(range(0, len(texts), step), held)
                if terms != chain.terms(texts[i])]
    assert not bad_docs, f"{len(bad_docs)} documents hold other terms, first {bad_docs[0]}"
    queries = [q.text for qs in sets.values() for q in qs.queries]
    queries += [f"{q} {q}" for q in queries[:30]]  # repeated query terms
    sent = [chain.segment(q) if chain.client_side else q for q in queries]
    for q, s in zip(queries, sent):
        seen = client.indices.analyze(index=built.index, field=chain.field, text=s)
        assert [t["token"] for t in seen["tokens"]] == chain.terms(q), q

    # 2. the same top 10 with the same scores
    pos = {d: i for i, d in enumerate(corpus.ids)}
    hits = msearch_batches(client, target, alias, [bm25_body(s, 10, chain.field) for s in sent])
    bad = 0
    for q, hs in zip(queries, hits):
        es = [(pos[h.doc_id], h.score) for h in hs]
        bad += _mismatches(es, bm.search(q, 10), bm, q, texts)
    assert sum(map(len, hits)) > 9 * len(queries)
    assert bad == 0, f"{bad} hits differ over {len(queries)} queries"
