"""Model specs for issue 6: BM25 chains (`chain` alias, names) and hybrid entries."""

from __future__ import annotations

import pytest

from embedarena.errors import ConfigError
from embedarena.evaluation.rows import HybridSpec
from embedarena.experiment import parse_model_entry as parse_model_spec
from embedarena.indexer.lexical import BM25Spec


@pytest.mark.parametrize(("raw", "name", "analyzer"), [
    ("bm25", "bm25", "standard"),
    ("bm25:jieba", "bm25-jieba", "jieba"),
    ({"type": "bm25", "chain": "jieba-search"}, "bm25-jieba-search", "jieba-search"),
    ({"type": "bm25", "analyzer": "cjk-bigram", "name": "lex"}, "lex", "cjk-bigram"),
])
def test_bm25_chains(raw: object, name: str, analyzer: str) -> None:
    spec = parse_model_spec(raw)
    assert isinstance(spec, BM25Spec) and spec.name == name and spec.analyzer == analyzer
    assert parse_model_spec(spec.public_dict()) == spec


def test_bm25_analyzer_names_are_checked() -> None:
    with pytest.raises(ConfigError, match="not a chain"):
        parse_model_spec({"type": "bm25", "analyzer": "two words"})


def test_hybrid_entry_defaults_and_round_trip() -> None:
    spec = parse_model_spec({"hybrid": ["bm25-jieba", "minilm"]})
    assert isinstance(spec, HybridSpec)
    assert spec.name == "bm25-jieba+minilm" and spec.fusion == "rrf" and spec.k == 60
    assert spec.candidates == 100 and spec.engine == "auto"
    assert parse_model_spec(spec.public_dict()) == spec
    p = parse_model_spec({"name": "h", "hybrid": ["a", "b"], "fusion": "weighted",
                          "weights": [0.2, 0.8], "normalize": "zscore"}).fusion_params()  # type: ignore[attr-defined]
    assert (p.method, p.weights, p.normalize) == ("weighted", (0.2, 0.8), "zscore")


@pytest.mark.parametrize(("raw", "msg"), [
    ({"name": "h", "hybrid": ["a"]}, "at least 2"),
    ({"name": "h", "hybrid": ["a", "a"]}, "repeat"),
    ({"name": "a", "hybrid": ["a", "b"]}, "its own member"),
    ({"name": "h", "hybrid": ["a", "b"], "weights": [1.0]}, "1 weights for 2"),
    ({"name": "h", "hybrid": ["a", "b"], "weights": [0, 0]}, "at least one > 0"),
    ({"name": "h", "hybrid": ["a", "b"], "fusion": "weighted", "engine": "native"}, "rrf only"),
    ({"name": "h", "hybrid": ["a", "b"], "fusion": "max"}, "fusion"),
    ({"name": "h", "hybrid": ["a", "b"], "kk": 3}, "unknown setting 'kk'"),
    ({"name": "h", "type": "hybrid"}, "hybrid"),
])
def test_hybrid_entry_errors_name_the_problem(raw: dict, msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        parse_model_spec(raw)
