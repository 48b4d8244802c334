"""The experiment file: models parsed once into typed specs, and every cross-entry mistake
(duplicate names, missing members, a bad report baseline, secrets) refused before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedarena.embedders.hf import HFSpec
from embedarena.errors import ConfigError
from embedarena.evaluation.rows import HybridSpec
from embedarena.experiment import Experiment, load_experiment
from embedarena.indexer.lexical import BM25Spec


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "exp.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_models_are_typed_specs_with_paths_resolved(tmp_path: Path) -> None:
    (tmp_path / "models" / "bge").mkdir(parents=True)
    exp = load_experiment(_write(tmp_path, """
name: e
corpus: {path: label.json}
queries: [{path: q.jsonl}]
metrics: [precise@1, ndcg@20]
models:
  - bm25:jieba
  - {name: bge, type: hf, path: ./models/bge}
  - {name: h, hybrid: [bm25-jieba, bge]}
"""))
    assert [type(m) for m in exp.models] == [BM25Spec, HFSpec, HybridSpec]
    assert exp.model_names == ["bm25-jieba", "bge", "h"]
    bge = exp.model("bge")
    assert isinstance(bge, HFSpec) and bge.path == str((tmp_path / "models" / "bge").resolve())
    assert exp.corpus is not None and exp.corpus.path == (tmp_path / "label.json").resolve()
    assert exp.search_depth() == 20 and exp.out == tmp_path / "runs" / "e"
    dumped = exp.model_dump(mode="json")["models"]
    assert dumped[2]["hybrid"] == ["bm25-jieba", "bge"]  # subclass fields survive a dump
    with pytest.raises(ConfigError, match="no model named 'x'.*bm25-jieba, bge, h"):
        exp.model("x")


@pytest.mark.parametrize(("models", "message"), [
    ("[bm25, {name: bm25, type: bm25, analyzer: whitespace}]",
     "two models are named 'bm25'"),
    ("[minilm, {name: minilm, type: hf, path: /x}]", "two models are named 'minilm'"),
    ("[bm25, {name: h, hybrid: [bm25, nope]}]", "needs 'nope', which is not a model"),
    ("[bm25, bm25:jieba, {name: h, hybrid: [bm25, bm25-jieba]}, {name: h2, hybrid: [h, bm25]}]",
     "member 'h' is itself a hybrid"),
    ("[{name: bge, type: hf, path: /m, poolng: cls}]", "unknown setting 'poolng'"),
    ("[{type: azure_openai, deployment: d, api_key: sk-LEAKED-123}]", "looks like a secret"),
])
def test_cross_entry_mistakes_are_refused_up_front(tmp_path: Path, models: str,
                                                   message: str) -> None:
    p = _write(tmp_path, f"name: e\nqueries: []\nmodels: {models}\n")
    with pytest.raises(ConfigError, match=message) as ei:
        load_experiment(p)
    assert str(p) in str(ei.value) and "LEAKED" not in str(ei.value)


def test_report_baseline_must_be_a_model(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="report.baseline 'bge' is not a model"):
        load_experiment(_write(tmp_path, "name: e\nmodels: [bm25]\nreport: {baseline: bge}\n"))
    ok = load_experiment(_write(tmp_path, "name: e\nmodels: [bm25]\nreport: {baseline: bm25}\n"))
    assert ok.report is not None and ok.report.baseline == "bm25"


def test_programmatic_experiment_and_encoding(tmp_path: Path) -> None:
    exp = Experiment(name="p", corpus={"path": tmp_path / "l.csv", "column": "标签",
                                       "encoding": "gb18030"},
                     queries=[{"path": tmp_path / "q.tsv", "encoding": "gbk"}],
                     models=["minilm"])
    assert exp.corpus is not None and exp.corpus.encoding == "gb18030"
    assert exp.queries[0].encoding == "gbk" and isinstance(exp.models[0], HFSpec)
    with pytest.raises(ValueError, match="at least one model"):
        Experiment(name="p", models=[])
    from embedarena.arena import inline_experiment

    with pytest.raises(ConfigError, match="index.type: Input should be 'hnsw'"):
        inline_experiment(["bm25"], index={"type": "annoy"})
    with pytest.raises(ConfigError, match="known metrics"):
        inline_experiment(["bm25"], metrics=["precise@1", "prec@5"])


@pytest.mark.parametrize(("models", "what"), [
    ("[{name: MiniLM, type: bm25}, {name: minilm, type: bm25, analyzer: whitespace}]",
     "index alias"),
    ("[{name: bge ft, type: bm25}, {name: bge-ft, type: bm25, analyzer: whitespace}]",
     "index alias"),
    ("[{name: 原数据 bge, type: bm25}, {name: 新数据 bge, type: bm25, analyzer: whitespace}]",
     "index alias"),  # Elasticsearch names are ASCII: both were 'bge'
])
def test_names_that_share_an_index_or_run_directory_are_refused(tmp_path: Path, models: str,
                                                                what: str) -> None:
    """Issue 12, item 12: distinct names that map to one alias or one folder would overwrite
    each other's index and runs; refused when the file is read, before any work."""
    with pytest.raises(ConfigError, match=f"would share one {what}"):
        load_experiment(_write(tmp_path, f"name: e\nmodels: {models}\n"))
    ok = load_experiment(_write(tmp_path, "name: e\nmodels: [{name: 原数据, type: bm25}, "
                                          "{name: 新数据, type: bm25, analyzer: whitespace}]\n"))
    assert ok.model_names == ["原数据", "新数据"]
