"""One tokenizer per chain: the in-process terms (`AnalysisChain.terms`) of the ES-analysed
chains are the node's `_analyze` tokens, token for token, on the whole T2Ranking sample and on
the edge cases the standard tokenizer is tailored for. (Client-side chains are checked against
the built index in test_bm25.py.)"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from embedarena.data.datasets import load_dataset
from embedarena.errors import ConfigError
from embedarena.indexer.analysis import (
    get_chain,
    in_process_chain_names,
    standard_tokens,
    whitespace_tokens,
)

#: Cases the standard tokenizer handles specially (each answer read off the node): words with
#: digits and mid-word marks, CJK/kana/Thai runs, full-width forms, emoji sequences, long words.
EDGE = [
    "Hello World，甲状腺结节 500GB ＴＥＳＴ 3.14 U.S.A. don't e-mail foo_bar ①② x@y.com 1,000",
    "５００ＧＢ a１b 가나다abc カタカナabc カタ_カナ ｶﾞｷﾞ ひらがなabc ⺀⼀々a〇〆〡 ไทยabc ๑๒abc",
    "İSTANBUL ΟΔΟΣ Ⓐⓑ ① ½ ² ©®™ ❤️ ❤ 👍🏽 👨\u200d👩\u200d👧 🇨🇳🇺 #️⃣ #\u20e3 1️⃣ ☺\ufe0e ☺\ufe0f\u0301",
    "a'b a’b 'ab' a:b a·b 1.2.3 1..2 a.1 1,2 1;2 a;b 1'2 ３．１４ _x_ __ 甲_乙 a\u200db a\u00adb",
    "ש'1 ש''  x.ש'9 ש\"ש.a ש'ש'9 a'ש\"ש \u3000全角\u3000 ab\u200bcd ٣٤٥ ١٢٫٣٤ a\u202fb 〆 𠀀",
    "☺\u200d\u200d☺ ☺️\u200d🏽 ☺️\u200d\u200d🏽 🏽 \u200d☺ 🇦\u200d🇨 #\u0301\ufe0f\u20e3 \U0001FB00 ั",
    "x" * 254 + ".y " + "x" * 600 + " " + "x" * 254 + "\U0001D400b",
]


def test_standard_tokens_known_answers() -> None:
    assert standard_tokens("Hello World，甲状腺结节 500GB ＴＥＳＴ U.S.A. don't e-mail ①") == [
        "hello", "world", "甲", "状", "腺", "结", "节", "500gb", "ｔｅｓｔ", "u.s.a", "don't",
        "e", "mail"]
    assert standard_tokens("İSTANBUL ΟΔΟΣ 👨\u200d👩\u200d👧 、。") == [
        "istanbul", "οδοσ", "👨\u200d👩\u200d👧"]
    assert [len(t) for t in standard_tokens("x" * 600)] == [255, 255, 90]
    assert whitespace_tokens("a\u00a0b c\u3000d") == ["a\u00a0b", "c", "d"]


def test_chains_without_an_in_process_tokenizer_say_so() -> None:
    assert {"standard", "jieba", "jieba-search", "bigram", "whitespace"} <= set(
        in_process_chain_names())
    assert "cjk-bigram" not in in_process_chain_names()
    for name, needs in (("cjk-bigram", "analysis-common"), ("english", "Elasticsearch")):
        chain = get_chain(name)
        assert not chain.in_process
        with pytest.raises(ConfigError, match=f"'{name}' has no in-process tokenizer.*{needs}"):
            chain.terms("甲状腺")
    assert get_chain("simple").terms("The Quick 甲状腺 a1b") == ["the", "quick", "甲状腺", "a", "b"]


@pytest.fixture(scope="module")
def t2rank_texts(shared_data: Path) -> list[str]:
    """Every T2Ranking passage and query (1,987 + 100 texts)."""
    corpus, sets = load_dataset("t2rank", shared_data)
    return list(corpus.texts) + [q.text for qs in sets.values() for q in qs.queries]


@pytest.mark.es
@pytest.mark.parametrize("name", ["standard", "whitespace", "simple", "stop", "keyword"])
def test_es_analysed_chains_give_the_nodes_tokens(es_node, t2rank_texts: list[str],  # noqa: ANN001
                                                  name: str) -> None:
    client = es_node.client
    chain = get_chain(name)
    texts = t2rank_texts + EDGE if name == "standard" else t2rank_texts[::7] + EDGE

    def node(text: str) -> list[str]:
        resp = client.indices.analyze(analyzer=chain.analyzer, text=text)
        return [t["token"] for t in resp["tokens"]]

    with ThreadPoolExecutor(4) as pool:
        seen = list(pool.map(node, texts))
    ours = [chain.terms(t) for t in texts]
    bad = [(t, s, o) for t, s, o in zip(texts, seen, ours) if s != o]
    assert sum(map(len, seen)) >= len(texts)  # something was compared
    assert not bad, (f"{len(bad)} of {len(texts)} texts differ; first: {bad[0][0][:80]!r}: "
                     f"node {bad[0][1][:20]} vs here {bad[0][2][:20]}")
