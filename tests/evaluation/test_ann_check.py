"""ANN check: exact in-process search agrees with ES on exact (flat) indexes, and HNSW runs
record their top-k overlap against it."""

from __future__ import annotations

import pytest

from embedarena.data.types import Corpus, Query, QuerySet
from embedarena.evaluation.runner import ann_overlap, run_dense
from embedarena.indexer.build import Builder, IndexOptions
from embedarena.indexer.es import Target
from embedarena.indexer.exact import exact_search

from ..indexer.fakes import BigramEmbedder

LABELS = [f"label {a}{b}" for a in "abcdefghij" for b in "klmnopqrst"] + [
    "甲状腺结节", "甲状腺癌", "胆管炎", "胰腺囊肿", "高血压", "糖尿病"]


def test_overlap_counts() -> None:
    out = ann_overlap([["a", "b", "c"], ["a", "x", "y"]], [["a", "b", "c"], ["a", "b", "c"]], 3)
    assert out["overlap"] == pytest.approx((1 + 1 / 3) / 2)
    assert out["min"] == pytest.approx(1 / 3) and out["queries_below_1"] == 1


@pytest.mark.es
def test_hnsw_runs_carry_the_overlap_and_flat_runs_match_exact(es_node, es_prefix) -> None:  # noqa: ANN001
    client, target = es_node.client, Target([es_node.url], "basic", False)
    emb = BigramEmbedder(dim=16)
    corpus = Corpus.from_labels(LABELS)
    qs = QuerySet("q", [Query(str(i), t, {t: 1.0}) for i, t in
                        enumerate(["label ak", "label cq", "甲状腺的结节", "高血压病"])])
    b = Builder(client, target)
    b.build_dense(f"{es_prefix}h", "m", emb, corpus, IndexOptions(type="hnsw", m=4,
                                                                   ef_construction=8))
    run = run_dense(client, target, f"{es_prefix}h", "m", emb, qs, k=10, num_candidates=10)
    check = run.meta["ann_check"]
    assert check["k"] == 10 and check["queries"] == 4 and 0 < check["overlap"] <= 1

    # recompute by hand: exact top 10 by dot product over the same vectors
    docs = emb.embed_documents(LABELS)
    qv = emb.embed_queries([q.text for q in qs])
    top = exact_search(qv, docs, 10, "dot_product", "numpy").indices
    exact = [[LABELS[j] for j in row] for row in top]
    want = ann_overlap([r.retrieved for r in run.results], exact, 10)["overlap"]
    assert check["overlap"] == pytest.approx(want)

    b.build_dense(f"{es_prefix}f", "m", emb, corpus, IndexOptions(type="flat"))
    flat = run_dense(client, target, f"{es_prefix}f", "m", emb, qs, k=10)
    assert "ann_check" not in flat.meta  # exact index: nothing to check
    assert [set(r.retrieved) for r in flat.results] == [set(e) for e in exact]


def test_comparison_shows_the_ann_column_only_when_some_run_has_one() -> None:
    from embedarena.evaluation.compare import Comparison
    from embedarena.evaluation.metrics import evaluate
    from embedarena.evaluation.run import QueryResult, Run

    run = Run("m", "qs", [QueryResult("1", "q", {"a": 1.0}, ["a", "b"], [1.0, 0.5])])
    c = Comparison()
    c.add("bm25", "qs", evaluate(run, "precise@1"))
    assert "ann@" not in c.to_markdown()
    c.add("dense", "qs", evaluate(run, "precise@1"), ann={"k": 10, "overlap": 0.987})
    md = c.to_markdown()
    assert "| model | precise@1 | ann@10 |" in md and "| 98.7 |" in md
    assert "ann_overlap" in c.to_csv().splitlines()[0]
    assert c.to_json()["rows"][1]["ann_check"]["overlap"] == 0.987


@pytest.mark.es
def test_a_failed_ann_check_is_recorded_not_fatal(es_node, es_prefix, monkeypatch) -> None:  # noqa: ANN001
    import embedarena.evaluation.runner as runner
    from embedarena.errors import SearchBackendError

    client, target = es_node.client, Target([es_node.url], "basic", False)
    emb = BigramEmbedder(dim=16)
    Builder(client, target).build_dense(f"{es_prefix}h", "m", emb, Corpus.from_labels(LABELS),
                                        IndexOptions(type="hnsw"))

    def boom(*a, **kw):  # noqa: ANN002, ANN003, ANN202
        raise SearchBackendError("vectors are not in _source")

    monkeypatch.setattr(runner, "fetch_vectors", boom)
    qs = QuerySet("q", [Query("1", "label ak", {"label ak": 1.0})])
    run = run_dense(client, target, f"{es_prefix}h", "m", emb, qs, k=5)
    assert run.results[0].retrieved and run.meta["ann_check"]["overlap"] is None
    assert "not in _source" in run.meta["ann_check"]["error"]


@pytest.mark.es
def test_ann_check_command_compares_saved_hnsw_runs_with_exact_search(
        es_node, es_prefix, tiny_bert_dir, tmp_path, monkeypatch, cli) -> None:  # noqa: ANN001
    """`embedarena ann-check EXPERIMENT` on the real node: overlap as the run recorded it,
    the run's own metrics under HNSW, exactly, and the difference; other rows skipped."""
    import json

    import yaml

    import embedarena as ea

    for k, v in es_node.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("EMBEDARENA_HOME", str(tmp_path / "home"))
    (tmp_path / "labels.json").write_text(json.dumps(LABELS, ensure_ascii=False), "utf-8")
    (tmp_path / "q.jsonl").write_text("".join(
        json.dumps({"query": f"{t} 的问题", "pos": [t]}, ensure_ascii=False) + "\n"
        for t in LABELS[::3]), "utf-8")
    exp_file = tmp_path / "exp.yaml"
    exp_file.write_text(yaml.safe_dump({
        "name": "annx", "corpus": {"path": "labels.json"}, "queries": [{"path": "q.jsonl"}],
        "metrics": ["recall@10", "mrr@10", "ndcg@10"], "depth": 10,
        "index": {"prefix": es_prefix, "type": "hnsw", "m": 4, "ef_construction": 8,
                  "num_candidates": 10},
        "models": ["bm25", {"name": "tiny", "type": "hf", "path": str(tiny_bert_dir)}]}),
        "utf-8")
    res = ea.run_experiment(exp_file)
    recorded = res.runs[("tiny", "q")].meta["ann_check"]
    assert "exact search over the index's vectors" in recorded["exact"]
    saved = json.loads((tmp_path / "runs" / "annx" / "q" / "tiny" / "meta.json").read_text(
        "utf-8"))
    assert saved["backend"] == "elasticsearch" and saved["elasticsearch"]["version"]

    p = cli("ann-check", exp_file, "--json", tmp_path / "ann.json")
    assert p.code == 0, p.stderr
    assert "vs exact search on the same vectors" in p.stdout and "recall@10" in p.stdout
    assert "What the approximation costs" in p.stdout and "tiny" in p.stdout
    assert "skipped" in p.stderr and "bm25" in p.stderr and "not a dense kNN run" in p.stderr
    out = json.loads((tmp_path / "ann.json").read_text("utf-8"))
    (check,) = out["checks"]
    assert check["model"] == "tiny" and check["index_type"] == "hnsw" and check["k"] == 10
    assert check["overlap"]["overlap"] == pytest.approx(recorded["overlap"])
    assert check["exact"].startswith(("faiss", "torch", "numpy"))
    for m in ("recall@10", "mrr@10", "ndcg@10"):
        got = check["metrics"][m]
        assert got["hnsw"] == pytest.approx(res.comparison.value("tiny", "q", m))
        assert got["delta"] == pytest.approx(got["exact"] - got["hnsw"])

    flat = cli("ann-check", tmp_path / "runs" / "annx" / "q" / "bm25")
    assert flat.code == 0 and "no HNSW runs to check" in flat.stderr
