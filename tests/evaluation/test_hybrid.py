"""Hybrid rows on the real node: client fusion equals fusing the member runs; the native rrf
retriever is used only where the node has it (detected), and then ranks the same."""

from __future__ import annotations

import pytest

from embedarena.data.types import Corpus, Query, QuerySet
from embedarena.embedders.hf import HFSpec
from embedarena.errors import ConfigError
from embedarena.evaluation.fusion import FusionParams, fuse_runs
from embedarena.evaluation.rows import BM25Row, DenseRow, HybridRow, Row, RowContext
from embedarena.evaluation.rows.hybrid import native_plan, resolve_members
from embedarena.experiment import Experiment
from embedarena.experiment import parse_model_entry as parse
from embedarena.indexer.build import IndexOptions
from embedarena.indexer.capabilities import detect
from embedarena.indexer.es import Target

from ..indexer.fakes import BigramEmbedder

LABELS = ["甲状腺结节", "甲状腺癌", "胆管炎", "胰腺囊肿", "宫颈上皮内瘤变", "子宫肌瘤", "高血压",
          "糖尿病", "肝硬化", "乳腺癌", "thyroid nodule", "hypertension", "胆囊炎", "胰腺炎"]
QS = QuerySet("q", [Query("1", "甲状腺的结节", {"甲状腺结节": 1.0}),
                    Query("2", "胆管发炎", {"胆管炎": 1.0}),
                    Query("3", "高血压和糖尿病", {"高血压": 1.0, "糖尿病": 1.0})])


def _rows(es_node, es_prefix: str, build: bool = True) -> dict[str, Row]:  # noqa: ANN001
    client = es_node.client if es_node is not None else None
    target = Target([es_node.url], "basic", False) if es_node is not None else None
    ctx = RowContext(client, target, IndexOptions(type="flat"), prefix=es_prefix,  # type: ignore[arg-type]
                     cache=False)
    rows: dict[str, Row] = {
        "bm25": BM25Row(parse("bm25"), ctx),  # type: ignore[arg-type]
        "big": DenseRow(HFSpec(name="big", path="x"), ctx, embedder=BigramEmbedder(dim=32)),
    }
    if build:
        corpus = Corpus.from_labels(LABELS)
        for r in rows.values():
            r.build(corpus)
    return rows


def _hybrid(rows: dict[str, Row], raw: dict[str, object]) -> HybridRow:
    spec = parse(raw)
    return HybridRow(spec, rows["bm25"].ctx, rows)  # type: ignore[arg-type, attr-defined]


def test_members_are_resolved_by_name() -> None:
    spec = parse({"name": "h", "hybrid": ["bm25", "nope"]})
    with pytest.raises(ConfigError, match="member 'nope' is not a model"):
        resolve_members(spec, _rows(None, "x-", build=False))  # type: ignore[arg-type]


def test_native_plan_reasons() -> None:
    rows = _rows(None, "x-", build=False)
    spec = parse({"name": "h", "hybrid": ["bm25", "big"]})
    members = [rows["bm25"], rows["big"]]
    assert "rank-rrf" in str(native_plan(spec, members, native_rrf=False))  # type: ignore[arg-type]
    assert native_plan(spec, members, native_rrf=True) == (rows["bm25"], rows["big"])  # type: ignore[arg-type]
    jieba = BM25Row(parse("bm25:jieba"), rows["bm25"].ctx)  # type: ignore[arg-type, attr-defined]
    assert "standard" in str(native_plan(spec, [jieba, rows["big"]], True))  # type: ignore[arg-type]
    w = parse({"name": "h", "hybrid": ["bm25", "big"], "fusion": "weighted"})
    assert "RRF only" in str(native_plan(w, members, True))  # type: ignore[arg-type]


@pytest.mark.es
def test_client_hybrid_is_the_fusion_of_member_runs(es_node, es_prefix) -> None:  # noqa: ANN001
    rows = _rows(es_node, es_prefix)
    hyb = _hybrid(rows, {"name": "h", "hybrid": ["bm25", "big"], "fusion": "weighted",
                         "normalize": "zscore", "weights": [0.3, 0.7], "candidates": 8})
    run = hyb.search(QS, depth=5)
    assert run.meta["engine"] == "client" and run.meta["candidates"] == 8
    members = [rows["bm25"].search(QS, 8), rows["big"].search(QS, 8)]
    want = fuse_runs(members, FusionParams("weighted", 60, (0.3, 0.7), "zscore"), 5, "h")
    assert [r.retrieved for r in run.results] == [r.retrieved for r in want.results]
    assert run.results[0].retrieved[0] == "甲状腺结节"
    built = hyb.build(Corpus.from_labels(LABELS))
    assert built.note and built.index == "" and len(built.meta["members"]) == 2


@pytest.mark.es
def test_native_rrf_where_the_node_has_it(es_node, es_prefix) -> None:  # noqa: ANN001
    rows = _rows(es_node, es_prefix)
    target = Target([es_node.url], "basic", False)
    caps = detect(es_node.client, target)
    native = _hybrid(rows, {"name": "h", "hybrid": ["bm25", "big"], "engine": "native",
                            "candidates": 10})
    if not caps.native_rrf:
        # detected, not assumed: asking for it fails clearly, auto falls back to client fusion
        with pytest.raises(ConfigError, match="rank-rrf"):
            native.search(QS, 5)
        auto = _hybrid(rows, {"name": "h", "hybrid": ["bm25", "big"], "candidates": 10})
        run = auto.search(QS, 5)
        assert run.meta["engine"] == "client" and "rank-rrf" in run.meta["engine_reason"]
        pytest.skip(f"node at {target.display} has no rank-rrf module (modules: "
                    f"{', '.join(sorted(caps.modules))}): native RRF not comparable here")
    run = native.search(QS, 5)
    ref = _hybrid(rows, {"name": "h", "hybrid": ["bm25", "big"], "engine": "client",
                         "candidates": 10}).search(QS, 5)
    assert run.meta["engine"] == "native-rrf"
    assert [r.retrieved for r in run.results] == [r.retrieved for r in ref.results]


def test_experiment_hybrids_are_checked_before_any_build() -> None:
    def exp(models: list[object]) -> Experiment:
        return Experiment(name="x", queries=[], models=models)

    exp(["bm25", "bm25:jieba", {"name": "h", "hybrid": ["bm25", "bm25-jieba"]}])
    with pytest.raises(ValueError, match="needs 'minilm', which is not a model"):
        exp(["bm25", {"name": "h", "hybrid": ["bm25", "minilm"]}])
    with pytest.raises(ValueError, match="itself a hybrid"):
        exp(["bm25", "bm25:jieba", {"name": "h", "hybrid": ["bm25", "bm25-jieba"]},
             {"name": "h2", "hybrid": ["h", "bm25"]}])
