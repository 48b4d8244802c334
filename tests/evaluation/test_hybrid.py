"""Hybrid rows on the real node: client fusion equals fusing the member runs; the native rrf
retriever is used only where the node has it (detected), and then ranks the same."""

from __future__ import annotations

import pytest

from embedarena.data.types import Corpus, Query, QuerySet
from embedarena.embedders.spec import parse_model_spec
from embedarena.errors import ConfigError
from embedarena.evaluation.fusion import FusionParams, fuse_runs
from embedarena.evaluation.hybrid import native_plan, resolve_members, run_hybrid
from embedarena.evaluation.runner import run_bm25, run_dense
from embedarena.indexer.build import Builder, IndexOptions
from embedarena.indexer.capabilities import detect
from embedarena.indexer.es import Target
from embedarena.pipeline import ModelHandle

from ..indexer.fakes import BigramEmbedder

LABELS = ["甲状腺结节", "甲状腺癌", "胆管炎", "胰腺囊肿", "宫颈上皮内瘤变", "子宫肌瘤", "高血压",
          "糖尿病", "肝硬化", "乳腺癌", "thyroid nodule", "hypertension", "胆囊炎", "胰腺炎"]
QS = QuerySet("q", [Query("1", "甲状腺的结节", {"甲状腺结节": 1.0}),
                    Query("2", "胆管发炎", {"胆管炎": 1.0}),
                    Query("3", "高血压和糖尿病", {"高血压": 1.0, "糖尿病": 1.0})])


def _handles(es_prefix: str) -> dict[str, ModelHandle]:
    lex = ModelHandle(parse_model_spec("bm25"), f"{es_prefix}bm25", analyzer="standard")
    dense = ModelHandle(parse_model_spec({"name": "big", "type": "hf", "path": "x"}),
                        f"{es_prefix}big", embedder=BigramEmbedder(dim=32))
    return {"bm25": lex, "big": dense}


def _build(es_node, handles: dict[str, ModelHandle]) -> Target:  # noqa: ANN001
    target = Target([es_node.url], "basic", False)
    b = Builder(es_node.client, target)
    corpus = Corpus.from_labels(LABELS)
    b.build_lexical(handles["bm25"].alias, "bm25", "standard", corpus, IndexOptions())
    emb = handles["big"].embedder
    assert emb is not None
    b.build_dense(handles["big"].alias, "big", emb, corpus, IndexOptions(type="flat"))
    return target


def test_members_are_resolved_by_name() -> None:
    spec = parse_model_spec({"name": "h", "hybrid": ["bm25", "nope"]})
    with pytest.raises(ConfigError, match="member 'nope' is not a model"):
        resolve_members(spec, _handles("x-"))  # type: ignore[arg-type]


def test_native_plan_reasons() -> None:
    hs = _handles("x-")
    spec = parse_model_spec({"name": "h", "hybrid": ["bm25", "big"]})
    members = [hs["bm25"], hs["big"]]
    assert "rank-rrf" in str(native_plan(spec, members, native_rrf=False))  # type: ignore[arg-type]
    assert native_plan(spec, members, native_rrf=True) == (hs["bm25"], hs["big"])  # type: ignore[arg-type]
    jieba = ModelHandle(parse_model_spec("bm25:jieba"), "x-j", analyzer="jieba")
    assert "standard" in str(native_plan(spec, [jieba, hs["big"]], True))  # type: ignore[arg-type]
    w = parse_model_spec({"name": "h", "hybrid": ["bm25", "big"], "fusion": "weighted"})
    assert "RRF only" in str(native_plan(w, members, True))  # type: ignore[arg-type]


@pytest.mark.es
def test_client_hybrid_is_the_fusion_of_member_runs(es_node, es_prefix) -> None:  # noqa: ANN001
    hs = _handles(es_prefix)
    target = _build(es_node, hs)
    client = es_node.client
    spec = parse_model_spec({"name": "h", "hybrid": ["bm25", "big"], "fusion": "weighted",
                             "normalize": "zscore", "weights": [0.3, 0.7], "candidates": 8})
    run = run_hybrid(client, target, spec, hs, QS, depth=5)  # type: ignore[arg-type]
    assert run.meta["engine"] == "client" and run.meta["candidates"] == 8
    emb = hs["big"].embedder
    assert emb is not None
    members = [run_bm25(client, target, hs["bm25"].alias, "bm25", "standard", QS, 8),
               run_dense(client, target, hs["big"].alias, "big", emb, QS, 8)]
    want = fuse_runs(members, FusionParams("weighted", 60, (0.3, 0.7), "zscore"), 5, "h")
    assert [r.retrieved for r in run.results] == [r.retrieved for r in want.results]
    assert run.results[0].retrieved[0] == "甲状腺结节"


@pytest.mark.es
def test_native_rrf_where_the_node_has_it(es_node, es_prefix) -> None:  # noqa: ANN001
    hs = _handles(es_prefix)
    target = _build(es_node, hs)
    caps = detect(es_node.client, target)
    native = parse_model_spec({"name": "h", "hybrid": ["bm25", "big"], "engine": "native",
                               "candidates": 10})
    if not caps.native_rrf:
        # detected, not assumed: asking for it fails clearly, auto falls back to client fusion
        with pytest.raises(ConfigError, match="rank-rrf"):
            run_hybrid(es_node.client, target, native, hs, QS, 5)  # type: ignore[arg-type]
        auto = parse_model_spec({"name": "h", "hybrid": ["bm25", "big"], "candidates": 10})
        run = run_hybrid(es_node.client, target, auto, hs, QS, 5)  # type: ignore[arg-type]
        assert run.meta["engine"] == "client" and "rank-rrf" in run.meta["engine_reason"]
        pytest.skip(f"node at {target.display} has no rank-rrf module (modules: "
                    f"{', '.join(sorted(caps.modules))}): native RRF not comparable here")
    run = run_hybrid(es_node.client, target, native, hs, QS, 5)  # type: ignore[arg-type]
    client_spec = parse_model_spec({"name": "h", "hybrid": ["bm25", "big"], "engine": "client",
                                    "candidates": 10})
    ref = run_hybrid(es_node.client, target, client_spec, hs, QS, 5)  # type: ignore[arg-type]
    assert run.meta["engine"] == "native-rrf"
    assert [r.retrieved for r in run.results] == [r.retrieved for r in ref.results]


def test_experiment_hybrids_are_checked_before_any_build() -> None:
    from embedarena.pipeline import check_hybrids

    check_hybrids(["bm25", "bm25:jieba", {"name": "h", "hybrid": ["bm25", "bm25-jieba"]}])
    with pytest.raises(ConfigError, match="member 'minilm' is not a model"):
        check_hybrids(["bm25", {"name": "h", "hybrid": ["bm25", "minilm"]}])
    with pytest.raises(ConfigError, match="itself a hybrid"):
        check_hybrids(["bm25", "bm25:jieba", {"name": "h", "hybrid": ["bm25", "bm25-jieba"]},
                       {"name": "h2", "hybrid": ["h", "bm25"]}])
