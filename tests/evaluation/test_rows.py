"""Rows as one type: each kind builds and searches on the real node; a new kind is one class
and one registration, and runs through the arena with nothing else changed."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pytest

from embedarena import specs
from embedarena.arena import run_experiment
from embedarena.data.types import Corpus, Query, QuerySet
from embedarena.embedders.hf import HFSpec
from embedarena.errors import ConfigError, IndexMismatchError
from embedarena.evaluation import rows as rows_mod
from embedarena.evaluation.rows import (
    BM25Row,
    DenseRow,
    HybridRow,
    Row,
    RowContext,
    create_row,
    register_row,
)
from embedarena.evaluation.rows import base as rows_base
from embedarena.evaluation.run import QueryResult, Run
from embedarena.experiment import Experiment
from embedarena.experiment import parse_model_entry as parse
from embedarena.indexer.build import BuildResult, IndexOptions
from embedarena.indexer.es import Target
from embedarena.specs import ModelSpec, register_spec

from ..indexer.fakes import BigramEmbedder

LABELS = ["甲状腺结节", "甲状腺癌", "胆管炎", "胰腺囊肿", "宫颈上皮内瘤变", "子宫肌瘤", "高血压",
          "糖尿病", "肝硬化", "乳腺癌", "胆囊炎", "胰腺炎"]
QS = QuerySet("q", [Query("1", "甲状腺的结节", {"甲状腺结节": 1.0}),
                    Query("2", "胆管发炎", {"胆管炎": 1.0}),
                    Query("3", "血压高", {"高血压": 1.0})])


def _ctx(es_node, prefix: str, index: str = "flat") -> RowContext:  # noqa: ANN001
    return RowContext(es_node.client, Target([es_node.url], "basic", False),
                      IndexOptions(type=index), prefix=prefix, cache=False)  # type: ignore[arg-type]


@pytest.mark.es
def test_each_kind_builds_and_searches(es_node, es_prefix: str) -> None:  # noqa: ANN001
    ctx = _ctx(es_node, es_prefix)
    corpus = Corpus.from_labels(LABELS)
    bm25 = create_row(parse("bm25"), ctx)
    dense = DenseRow(HFSpec(name="big", path="x"), ctx, embedder=BigramEmbedder(dim=32))
    assert isinstance(bm25, BM25Row) and bm25.alias == f"{es_prefix}bm25"
    for row in (bm25, dense):
        built = row.build(corpus)
        assert not built.reused and built.docs == len(corpus)
        assert row.build(corpus, force=True) is built  # built once per row object
        run = row.search(QS, 5, corpus_sha=corpus.sha256())
        assert len(run) == len(QS) and all(1 <= len(r.retrieved) <= 5 for r in run.results)
        assert run.results[0].retrieved[0] == "甲状腺结节"
        assert run.meta["model_settings"] == row.spec.public_dict()
        with pytest.raises(IndexMismatchError, match="another corpus"):
            row.search(QS, 5, corpus_sha="0" * 64)
    again = create_row(parse("bm25"), ctx).build(corpus)  # a new row object: reused
    assert again.reused and again.index == bm25.build(corpus).index
    hyb = create_row(parse({"name": "h", "hybrid": ["bm25", "big"]}), ctx,
                     {"bm25": bm25, "big": dense})
    assert isinstance(hyb, HybridRow) and hyb.alias is None
    run = hyb.search(QS, 3)
    assert run.meta["engine"] == "client" and set(run.meta["member_fingerprints"]) == {
        "bm25", "big"}
    assert [r.retrieved[0] for r in run.results] == ["甲状腺结节", "胆管炎", "高血压"]


def test_a_spec_without_a_row_kind_or_members_is_refused() -> None:
    with pytest.raises(ConfigError, match="needs the rows \\['a', 'b'\\]"):
        create_row(parse({"name": "h", "hybrid": ["a", "b"]}), None)  # type: ignore[arg-type]
    from embedarena.training.finetune import FinetuneSpec

    assert "finetune" in specs.spec_types()
    ft = FinetuneSpec.model_construct(name="ft", type="finetune")
    with pytest.raises(ConfigError, match="cannot be a row"):
        create_row(ft, None)  # type: ignore[arg-type]


@pytest.mark.es
def test_a_new_row_kind_is_one_class_and_one_registration(
        es_node, es_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    for table in ("_KINDS", "_PREFIXES", "_NAMES", "_KEYS"):
        monkeypatch.setattr(specs, table, dict(getattr(specs, table)))
    monkeypatch.setattr(rows_base, "_ROWS", dict(rows_base._ROWS))
    for k, v in es_node.env.items():
        monkeypatch.setenv(k, v)

    @register_spec(prefixes=("alpha",), forms=("alpha[:<n>]",))
    class AlphaSpec(ModelSpec):
        """Ranks the corpus alphabetically: a row with no index of its own."""

        type: Literal["alpha"] = "alpha"
        n: int = 3

        @classmethod
        def from_inline(cls, rest: str) -> dict[str, Any]:
            return {"n": int(rest), "name": f"alpha{rest}"}

    @register_row(AlphaSpec)
    class AlphaRow:
        def __init__(self, spec: AlphaSpec, ctx: RowContext, members: Mapping[str, Row]):
            self.spec, self.ctx, self.docs = spec, ctx, []

        name = property(lambda self: self.spec.name)
        alias = None
        fingerprint = "alpha:1"

        def build(self, corpus: Corpus, *, force: bool = False,
                  keep_old: bool = False) -> BuildResult:
            self.docs = sorted(corpus.ids)
            return BuildResult("", "", len(corpus), False, 0.0, note="sorted in memory")

        def search(self, queries: QuerySet, depth: int, *, corpus_sha: str | None = None,
                   checks: bool = True) -> Run:
            top = self.docs[:min(depth, self.spec.n)]
            return Run(self.name, queries.name, [
                QueryResult(q.qid, q.text, dict(q.gold), top, [1.0] * len(top))
                for q in queries])

        def stats(self) -> dict[str, Any]:
            return {}

    (tmp_path / "labels.json").write_text('["b", "a", "c", "d"]', encoding="utf-8")
    (tmp_path / "q.jsonl").write_text('{"query": "x", "pos": ["a"]}\n'
                                      '{"query": "y", "pos": ["d"]}\n', encoding="utf-8")
    exp = Experiment.model_validate(
        {"name": "alpha", "corpus": {"path": "labels.json"}, "queries": [{"path": "q.jsonl"}],
         "metrics": ["hit@1", "hit@5"], "index": {"prefix": es_prefix},
         "models": ["alpha:2", "bm25"], "out": str(tmp_path / "out")},
        context={"base_dir": tmp_path})
    assert exp.corpus is not None and exp.corpus.path == tmp_path / "labels.json"
    res = run_experiment(exp)
    assert res.comparison.models == ["alpha2", "bm25"]
    assert res.comparison.value("alpha2", "q", "hit@1") == 0.5  # "a" is first, "d" is not
    assert res.comparison.value("alpha2", "q", "hit@5") == 0.5  # n=2 keeps only a, b
    assert res.builds["alpha2"].note == "sorted in memory"
    assert "alpha" in rows_mod.row_types()
