"""The arena in process, against the real node: one experiment with a dense, a BM25 and a
hybrid row over the real Cranfield collection; reuse, `only=` and `force=` read from the
result object, never from printed text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import embedarena as ea
from embedarena.errors import ConfigError
from embedarena.progress import RecordingProgress


@pytest.fixture
def experiment(es_node, es_prefix: str, tiny_bert_dir: Path, shared_data: Path,  # noqa: ANN001
               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ea.Experiment:
    for k, v in es_node.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("EMBEDARENA_HOME", str(tmp_path / "home"))  # a private embedding cache
    monkeypatch.setenv("EMBEDARENA_SHARED_DATA", str(shared_data))
    return ea.Experiment(
        name="arena", corpus={"dataset": "cranfield"},
        queries=[{"dataset": "cranfield", "name": "cranfield"}],
        metrics=["precise@5", "hit@5", "ndcg@10"],
        index={"prefix": es_prefix, "type": "flat"},
        models=["bm25", {"name": "tiny", "type": "hf", "path": str(tiny_bert_dir)},
                {"name": "hyb", "hybrid": ["bm25", "tiny"], "candidates": 20}],
        out=tmp_path / "out")


def _hit_at(run_jsonl: Path, k: int) -> float:
    """hit@k straight from run.jsonl, independently of the metrics module."""
    rows = [json.loads(ln) for ln in run_jsonl.read_text(encoding="utf-8").splitlines()]
    return sum(bool(set(r["gold"]) & set(r["retrieved"][:k])) for r in rows) / len(rows)


@pytest.mark.es
def test_run_reuse_only_and_force(experiment: ea.Experiment, tmp_path: Path) -> None:
    progress = RecordingProgress()
    first = ea.run_experiment(experiment, progress=progress)
    out = tmp_path / "out"
    assert first.rows == ["bm25", "tiny", "hyb"]
    assert set(first.built) == {"bm25", "tiny"} and first.reused == []
    assert first.comparison.models == ["bm25", "tiny", "hyb"]
    n_docs, n_q = first.corpus_size, first.query_counts["cranfield"]
    assert (n_docs, n_q) == (1400, 225)
    tiny = first.cache("tiny")
    from embedarena.data.datasets import load_dataset

    distinct = len(set(load_dataset("cranfield")[0].texts))  # one abstract appears twice
    assert tiny["misses"] == distinct + n_q and tiny["hits"] + tiny["misses"] == n_docs + n_q
    assert tiny["inner_calls"] >= 1
    for name in ("bm25", "tiny", "hyb"):
        d = out / "cranfield" / name
        assert {"run.jsonl", "run.trec", "metrics.json", "meta.json"} <= {
            p.name for p in d.iterdir()}
        assert first.comparison.value(name, "cranfield", "hit@5") == pytest.approx(
            _hit_at(d / "run.jsonl", 5))
        meta = json.loads((d / "meta.json").read_text(encoding="utf-8"))
        assert meta["corpus_sha256"] and meta["queries_sha256"] and meta["model_settings"]
        # what the node lacks, probed once, and where embedarena did the work instead
        node = meta["elasticsearch"]
        assert set(node["features"]) == {"painless", "analysis_common", "rank_vectors",
                                         "rrf_linear_retrievers"}
        assert node["paths"]["fusion"].startswith("client-side") == \
            (not node["features"]["rrf_linear_retrievers"])
        assert node["paths"]["exact_search"].startswith("client-side")
    assert json.loads((out / "experiment.json").read_text())["query_sets"] == ["cranfield"]
    assert (out / "comparison.md").is_file()
    assert any(t.description == "index tiny" and t.closed and t.completed == n_docs
               for t in progress.tasks)
    assert any("1400 documents" in n for _, n in progress.notes)
    frame = first.to_pandas()
    assert frame.shape == (3, 3) and frame.loc[("cranfield", "tiny"), "hit@5"] == \
        first.comparison.value("tiny", "cranfield", "hit@5")
    per_query = first.run_frame("bm25", "cranfield")
    assert len(per_query) == n_q and {"query", "gold", "retrieved", "ndcg@10"} <= set(per_query)

    again = ea.run_experiment(experiment)
    assert set(again.reused) == {"bm25", "tiny"} and again.built == []
    cache = again.cache("tiny")
    assert cache["inner_calls"] == 0 and cache["misses"] == 0 and cache["hits"] == n_q
    for name in ("bm25", "tiny", "hyb"):
        assert again.comparison.value(name, "cranfield", "ndcg@10") == \
            first.comparison.value(name, "cranfield", "ndcg@10")

    only = ea.run_experiment(experiment, tmp_path / "only", only=["hyb"])
    assert only.rows == ["hyb"] and only.comparison.models == ["hyb"]
    assert only.builds["bm25"].reused and only.builds["tiny"].reused  # members: built, unscored
    assert not (tmp_path / "only" / "cranfield" / "tiny").exists()

    forced = ea.run_experiment(experiment, tmp_path / "forced", only=["tiny"], force=True)
    assert forced.built == ["tiny"]
    assert forced.builds["tiny"].index != first.builds["tiny"].index
    cache = forced.cache("tiny")
    assert cache["inner_calls"] == 0 and cache["misses"] == 0  # rebuilt from the cache
    assert cache["hits"] == n_docs + n_q

    with pytest.raises(ConfigError, match=r"no model named \['nope'\].*'bm25', 'tiny', 'hyb'"):
        ea.run_experiment(experiment, only=["nope"])


@pytest.mark.es
def test_build_only_writes_no_runs(experiment: ea.Experiment, tmp_path: Path) -> None:
    res = ea.run_experiment(experiment, tmp_path / "b", search=False)
    assert set(res.builds) == {"bm25", "tiny", "hyb"} and res.runs == {}
    assert res.builds["hyb"].note and not res.builds["hyb"].index
    assert not (tmp_path / "b").exists()


# -- validated before any work (issue 12, items 4 and 12) ------------------------------------
def _faiss_experiment(tmp_path: Path, tiny_bert_dir: Path) -> ea.Experiment:
    """A node-free experiment (faiss rows) whose report compares against bm25."""
    (tmp_path / "label.json").write_text('["甲状腺结节", "甲状腺癌", "胆管炎"]', encoding="utf-8")
    (tmp_path / "q.jsonl").write_text('{"query": "甲状腺", "pos": ["甲状腺癌"]}\n',
                                      encoding="utf-8")
    return ea.Experiment(
        name="v", corpus={"path": tmp_path / "label.json"},
        queries=[{"path": tmp_path / "q.jsonl", "name": "q"}], metrics=["hit@2"],
        index={"backend": "faiss"}, report={"baseline": "bm25", "formats": ["md"]},
        models=["bm25", {"name": "tiny", "type": "hf", "path": str(tiny_bert_dir)}],
        out=tmp_path / "out")


def test_report_baseline_left_out_and_stale_runs_are_refused_up_front(
        tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDARENA_HOME", str(tmp_path / "home"))
    exp = _faiss_experiment(tmp_path, tiny_bert_dir)
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="report.baseline 'bm25' is not among the models to "
                                          "run"):
        ea.run_experiment(exp, only=["tiny"])
    assert not out.exists() and not (tmp_path / "home").exists()  # nothing ran
    # a saved baseline run from another corpus: the report would refuse at the end, so the
    # run refuses now, naming it
    from embedarena.data.readers import load_corpus, load_queries

    corpus = load_corpus(tmp_path / "label.json")
    queries = load_queries(tmp_path / "q.jsonl", name="q")
    stale = ea.Run("bm25", "q", [], meta={"corpus_sha256": "0" * 64,
                                          "queries_sha256": queries.sha256()})
    stale.save(out / "q" / "bm25")
    with pytest.raises(ConfigError, match=r"corpus 00000000: .*out/q/bm25.*choose another"):
        ea.run_experiment(exp, only=["tiny"])
    assert not (out / "q" / "tiny").exists()
    # the same inputs: the saved baseline counts, the run goes ahead and the report is written
    stale.meta["corpus_sha256"] = corpus.sha256()
    stale.save(out / "q" / "bm25")
    result = ea.run_experiment(exp, only=["tiny"])
    assert (out / "q" / "tiny" / "run.jsonl").is_file()
    assert [p.name for p in result.report_paths] == ["report.md"]
