"""BM25 analysis chains: jieba gives the same tokens at index and query time; capabilities are
detected on the real node; each chain builds and searches on the real node (or says clearly
which module it lacks)."""

from __future__ import annotations

import pytest

from embedarena.data.types import Corpus, Query, QuerySet
from embedarena.errors import ConfigError
from embedarena.evaluation.runner import run_bm25
from embedarena.indexer.analysis import (
    SEGMENTED_FIELD,
    chain_fingerprint,
    chain_names,
    get_chain,
    normalise,
)
from embedarena.indexer.build import Builder, IndexOptions, lexical_fingerprint, lexical_mapping
from embedarena.indexer.capabilities import ANALYSIS_COMMON, detect
from embedarena.indexer.es import Target
from embedarena.indexer.search import bm25_body

LABELS = ["甲状腺结节", "甲状腺癌", "胆管炎", "胰腺囊肿", "宫颈上皮内瘤变", "子宫肌瘤", "高血压",
          "糖尿病", "肝硬化", "乳腺癌", "营业执照办理", "Thyroid Nodule"]

pytest.importorskip("jieba")


def _target(es_node) -> Target:  # noqa: ANN001
    return Target([es_node.url], "basic", False)


def test_chains_are_registered_and_unknown_names_pass_through() -> None:
    assert chain_names()[:4] == ["standard", "cjk-bigram", "jieba", "jieba-search"]
    assert get_chain("english").analyzer == "english"
    with pytest.raises(ConfigError):
        get_chain("two words")


def test_bigram_tokens_follow_cjk_bigram() -> None:
    from embedarena.indexer.analysis import bigram_tokens

    assert bigram_tokens("甲状腺结节") == ["甲状", "状腺", "腺结", "结节"]
    assert bigram_tokens("癌 SSD硬盘500GB，") == ["癌", "ssd", "硬盘", "500gb"]
    assert bigram_tokens("ＴＥＳＴ") == ["test"]


def test_standard_fingerprint_is_unchanged_and_chains_differ() -> None:
    import hashlib

    assert lexical_fingerprint("standard") == \
        "bm25:" + hashlib.sha256(b"bm25|standard").hexdigest()
    fps = {chain_fingerprint(get_chain(n)) for n in chain_names()}
    assert len(fps) == len(chain_names())


@pytest.mark.parametrize("text", [
    "我有胆管炎能买保险吗", "营业执照快到期了怎么办理", "ＨＥＬＬＯ World，甲状腺结节<br>怎么办？",
    "  ", "硬盘 SSD 500GB 多少钱",
])
@pytest.mark.parametrize("name", ["jieba", "jieba-search", "bigram"])
def test_jieba_same_tokens_at_index_and_query_time(name: str, text: str) -> None:
    """The document path (Builder action) and the query path (runner) use one function; the
    tokens ES sees on both sides are the same, whatever side the text arrives on."""
    chain = get_chain(name)
    doc_side = Builder._action(Corpus.from_labels([text]), 0, text, text,
                               {SEGMENTED_FIELD: chain.segment(text)})["_source"][SEGMENTED_FIELD]
    query_side = bm25_body(chain.segment(text), 5, chain.field)["query"]["match"][
        SEGMENTED_FIELD]["query"]
    assert doc_side == query_side
    assert doc_side.split() == chain.tokenize(text)
    assert all(t == normalise(t) and t.strip() for t in doc_side.split())


def test_jieba_mapping_keeps_plain_text_for_langchain() -> None:
    m = lexical_mapping("jieba", {})
    assert m["properties"]["text"]["analyzer"] == "standard"
    assert m["properties"][SEGMENTED_FIELD] == {"type": "text", "analyzer": "whitespace"}
    assert lexical_mapping("standard", {})["properties"].keys() == {"text", "doc_id", "metadata"}


@pytest.mark.es
def test_capabilities_are_read_from_the_node(es_node) -> None:  # noqa: ANN001
    caps = detect(es_node.client, _target(es_node))
    plugins = es_node.client.nodes.info(metric="plugins")["nodes"]
    names = {m["name"] for n in plugins.values() for m in n.get("modules", [])}
    assert caps.modules <= names | {p["name"] for n in plugins.values()
                                    for p in n.get("plugins", [])}
    assert caps.has(ANALYSIS_COMMON) == (ANALYSIS_COMMON in names)
    assert caps.version


@pytest.mark.es
@pytest.mark.parametrize("name", ["standard", "cjk-bigram", "jieba", "jieba-search", "bigram"])
def test_each_chain_builds_and_searches_or_names_the_missing_module(
        es_node, es_prefix, name: str) -> None:  # noqa: ANN001
    client, target = es_node.client, _target(es_node)
    alias = f"{es_prefix}bm25-{name}"
    corpus = Corpus.from_labels(LABELS)
    chain = get_chain(name)
    caps = detect(client, target)
    missing = [m for m in chain.requires if not caps.has(m)]
    builder = Builder(client, target)
    if missing:
        with pytest.raises(ConfigError, match=f"needs the Elasticsearch module '{missing[0]}'"):
            builder.build_lexical(alias, "bm25", name, corpus, IndexOptions())
        assert not client.indices.exists_alias(name=alias)
        return
    builder.build_lexical(alias, "bm25", name, corpus, IndexOptions())
    qs = QuerySet("q", [Query("1", "我有胆管炎能买保险吗", {"胆管炎": 1.0}),
                        Query("2", "营业执照怎么办理", {"营业执照办理": 1.0}),
                        Query("3", "thyroid nodules", {"Thyroid Nodule": 1.0})])
    run = run_bm25(client, target, alias, "bm25", name, qs, k=3)
    assert run.results[0].retrieved[0] == "胆管炎"
    assert run.results[1].retrieved[0] == "营业执照办理"
    assert run.meta["analysis"]["chain"] == name
    if chain.client_side:
        # ES really holds the chain's terms: a term query on one finds the document
        word = "营业执照" if name.startswith("jieba") else "执照"
        hits = client.search(index=alias, query={"term": {SEGMENTED_FIELD: word}})
        assert hits["hits"]["total"]["value"] == 1
        # and ES's own view of both sides equals the chain's tokens: the indexed terms of a
        # document (term vectors) and the analysed query text
        from embedarena.indexer.build import doc_uid

        doc = "营业执照办理"
        tv = client.termvectors(index=alias, id=doc_uid(doc), fields=[SEGMENTED_FIELD])
        terms = tv["term_vectors"][SEGMENTED_FIELD]["terms"]
        assert sorted(terms) == sorted(set(chain.tokenize(doc)))
        q = "营业执照怎么办理"
        seen = client.indices.analyze(index=alias, field=SEGMENTED_FIELD, text=chain.segment(q))
        assert [t["token"] for t in seen["tokens"]] == chain.tokenize(q)


@pytest.mark.es
def test_unknown_analyzer_is_a_clear_error(es_node, es_prefix) -> None:  # noqa: ANN001
    client, target = es_node.client, _target(es_node)
    with pytest.raises(ConfigError, match="does not exist"):
        Builder(client, target).build_lexical(f"{es_prefix}x", "bm25", "no_such_analyzer",
                                              Corpus.from_labels(LABELS), IndexOptions())
