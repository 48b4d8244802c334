"""Embedder rows under `index.backend: faiss`: the same rankings and metrics as an
Elasticsearch `flat` index on the real Cranfield collection, the same run directory files,
no node needed, the embedding cache reused, approximate types checked against exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import embedarena as ea
from embedarena.errors import ConfigError, SearchBackendError
from embedarena.evaluation.rows import FaissDenseRow, RowContext, create_row
from embedarena.experiment import IndexConfig
from embedarena.experiment import parse_model_entry as parse

METRICS = ["recall@1", "recall@10", "recall@100", "mrr@1", "mrr@10", "mrr@100", "r_cap@10",
           "ndcg@10", "precise@10"]


def _experiment(tmp_path: Path, tiny: Path, index: dict[str, object], name: str,
                models: list[object] | None = None) -> ea.Experiment:
    return ea.Experiment(
        name=name, corpus={"dataset": "cranfield"},
        queries=[{"dataset": "cranfield", "name": "cranfield"}], metrics=METRICS, depth=100,
        index=index, models=models or [{"name": "tiny", "type": "hf", "path": str(tiny)}],
        out=tmp_path / name)


@pytest.fixture
def no_node(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shared_data: Path) -> list[str]:
    """No Elasticsearch: the settings point at a closed port, with a private cache. Returns
    the list of connection attempts (every call of `embedarena.indexer.es.connect`, which
    then fails on the closed port as it would for a user)."""
    import os

    import embedarena.indexer.es as es_module
    from embedarena.indexer.node import free_port

    attempts: list[str] = []
    real_connect = es_module.connect

    def counting_connect(*args: object, **kwargs: object) -> object:
        attempts.append(os.environ.get("EMBEDARENA_ES_URL", ""))
        return real_connect(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(es_module, "connect", counting_connect)

    for k in list(os.environ):
        if k.startswith("EMBEDARENA_ES_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("EMBEDARENA_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("", encoding="utf-8")
    monkeypatch.setenv("EMBEDARENA_ES_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("EMBEDARENA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EMBEDARENA_SHARED_DATA", str(shared_data))
    return attempts


def test_the_faiss_backend_runs_without_elasticsearch(no_node: list[str], tiny_bert_dir: Path,
                                                      tmp_path: Path) -> None:
    models = [{"name": "tiny", "type": "hf", "path": str(tiny_bert_dir)},
              {"name": "tiny-cls", "type": "hf", "path": str(tiny_bert_dir), "pooling": "cls"},
              {"name": "fused", "hybrid": ["tiny", "tiny-cls"], "candidates": 50}]
    exp = _experiment(tmp_path, tiny_bert_dir, {"backend": "faiss"}, "nodeless", models)
    assert exp.index.type == "flat"  # faiss's default: exact
    first = ea.run_experiment(exp)
    assert first.comparison.models == ["tiny", "tiny-cls", "fused"]
    d = tmp_path / "nodeless" / "cranfield" / "tiny"
    assert {"run.jsonl", "run.trec", "metrics.json", "meta.json"} <= {p.name for p in d.iterdir()}
    meta = json.loads((d / "meta.json").read_text(encoding="utf-8"))
    assert meta["backend"] == "faiss" and meta["index_type"] == "Flat"
    assert "elasticsearch" not in meta and meta["faiss"]["where"].startswith("faiss-")
    assert meta["corpus_sha256"] and meta["model_settings"]["name"] == "tiny"
    assert "ann_check" not in meta  # exact: nothing to check
    assert first.builds["tiny"].note and "Flat" in first.builds["tiny"].note
    misses = first.cache("tiny")["misses"]
    assert misses > 1000
    again = ea.run_experiment(exp)  # the vectors come back from the cache
    assert again.cache("tiny")["misses"] == 0 and again.cache("tiny")["inner_calls"] == 0
    for m in ("tiny", "tiny-cls", "fused"):
        assert again.comparison.value(m, "cranfield", "ndcg@10") == \
            first.comparison.value(m, "cranfield", "ndcg@10")
    assert no_node == []  # two runs, three rows (a hybrid among them), not one connection


def test_bm25_under_the_faiss_backend_needs_a_node_and_says_so(
        no_node: list[str], tiny_bert_dir: Path, tmp_path: Path) -> None:
    exp = _experiment(tmp_path, tiny_bert_dir, {"backend": "faiss"}, "withbm25",
                      ["bm25", {"name": "tiny", "type": "hf", "path": str(tiny_bert_dir)}])
    with pytest.raises(SearchBackendError) as e:
        ea.run_experiment(exp)
    msg = str(e.value)
    assert "model 'bm25' needs Elasticsearch" in msg and "backend faiss" in msg
    assert "cannot reach" in msg  # (the dense row alone runs: the test above)
    assert len(no_node) == 1  # the bm25 row asked, once


def test_faiss_hnsw_and_ivf_rows_carry_their_ann_check(no_node: list[str], tiny_bert_dir: Path,
                                                       tmp_path: Path) -> None:
    models = [{"name": "tiny", "type": "hf", "path": str(tiny_bert_dir)}]
    for index, kind in (({"backend": "faiss", "type": "hnsw", "m": 4, "ef_construction": 8,
                          "num_candidates": 10}, "HNSW4"),
                        ({"backend": "faiss", "type": "ivf", "nlist": 30, "nprobe": 2}, "IVF30")):
        res = ea.run_experiment(_experiment(tmp_path, tiny_bert_dir, index, kind, models))
        run = res.runs[("tiny", "cranfield")]
        assert run.meta["index_type"].startswith(kind)
        check = run.meta["ann_check"]
        assert check["k"] == 100 and check["queries"] == 225 and 0 < check["overlap"] < 1
        assert "exact search over the same vectors" in check["exact"]
        assert "ann@100" in res.comparison.to_markdown()


def test_backend_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="faiss offers flat, hnsw and ivf"):
        IndexConfig(backend="faiss", type="int8_hnsw")
    with pytest.raises(ValueError, match="add backend: faiss"):
        IndexConfig(type="ivf")
    with pytest.raises(ValueError, match="only apply to type ivf"):
        IndexConfig(backend="faiss", type="hnsw", nlist=4)
    with pytest.raises(ValueError, match="only apply to type hnsw"):
        IndexConfig(backend="faiss", m=8)
    assert IndexConfig().type == "hnsw" and IndexConfig(backend="faiss").type == "flat"


def test_the_registry_picks_the_row_kind_by_backend(tiny_bert_dir: Path) -> None:
    spec = parse({"name": "tiny", "type": "hf", "path": str(tiny_bert_dir)})
    row = create_row(spec, RowContext(backend="faiss", cache=False))
    assert isinstance(row, FaissDenseRow) and row.alias is None
    with pytest.raises(ConfigError, match="needs the corpus"):
        row.search(ea.data.types.QuerySet("q", []), 5)  # type: ignore[attr-defined]


@pytest.mark.es
def test_faiss_flat_ranks_like_elasticsearch_flat_on_cranfield(
        es_node, es_prefix: str, shared_data: Path,  # noqa: ANN001
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The real collection, a fast real-text encoder (hashed character bigrams: a tiny
    random BERT puts every abstract within 1e-5 of every other, so it cannot tell rankings
    apart), one row of each kind over the same vectors."""
    from embedarena.data.datasets import load_dataset
    from embedarena.evaluation.metrics import evaluate
    from embedarena.evaluation.rows import DenseRow
    from embedarena.indexer.build import IndexOptions
    from embedarena.indexer.es import Target

    from ..indexer.fakes import BigramEmbedder

    monkeypatch.setenv("EMBEDARENA_SHARED_DATA", str(shared_data))
    corpus, sets = load_dataset("cranfield")
    qs = next(iter(sets.values()))
    spec = parse({"name": "bigram", "type": "hf", "path": "unused"})
    es_ctx = RowContext(es_node.client, Target([es_node.url], "basic", False),
                        IndexOptions(type="flat"), prefix=es_prefix, cache=False)
    es_row = DenseRow(spec, es_ctx, embedder=BigramEmbedder(dim=64))
    fa_row = FaissDenseRow(spec, RowContext(backend="faiss", cache=False),
                           embedder=BigramEmbedder(dim=64))
    for row in (es_row, fa_row):
        row.build(corpus)
    a = es_row.search(qs, 100, corpus_sha=corpus.sha256())
    b = fa_row.search(qs, 100, corpus_sha=corpus.sha256())
    assert b.meta["backend"] == "faiss" and b.meta["similarity"] == a.meta["similarity"]
    tied_ranks = 0
    for ra, rb in zip(a.results, b.results, strict=True):
        assert ra.qid == rb.qid and len(ra.retrieved) == len(rb.retrieved) == 100
        # the same scores rank by rank (the faiss row puts them on ES's scale) ...
        assert rb.scores == pytest.approx(ra.scores, abs=1e-5)
        # ... and the same document wherever that score is not tied with another rank
        for r, s in enumerate(ra.scores[:-1]):
            if any(abs(s - t) <= 1e-6 for j, t in enumerate(ra.scores) if j != r):
                tied_ranks += 1
            else:
                assert ra.retrieved[r] == rb.retrieved[r], (ra.qid, r)
    assert tied_ranks < 0.05 * len(qs) * 100  # 226 of 22,500 here
    ma, mb = evaluate(a, METRICS), evaluate(b, METRICS)
    for m in METRICS:  # the ties fall where they cost nothing: identical means
        assert mb.mean(m) == pytest.approx(ma.mean(m), abs=1e-12), m


def _write_label_data(tmp_path: Path) -> None:
    """A six-label corpus (label.json) and one query per label (test.jsonl), seed-004 style."""
    labels = ["甲状腺结节", "甲状腺癌", "胆管炎", "胰腺囊肿", "高血压", "糖尿病"]
    (tmp_path / "label.json").write_text(json.dumps(labels, ensure_ascii=False), "utf-8")
    (tmp_path / "test.jsonl").write_text("".join(
        json.dumps({"query": f"{t}怎么办", "pos": [t]}, ensure_ascii=False) + "\n"
        for t in labels), "utf-8")


def test_eval_backend_faiss_writes_a_run_directory_without_a_node(
        no_node: list[str], tiny_bert_dir: Path, tmp_path: Path, cli) -> None:  # noqa: ANN001
    _write_label_data(tmp_path)
    out = tmp_path / "run"
    p = cli("eval", "--backend", "faiss", "--model", f"hf:{tiny_bert_dir}", "--corpus",
            tmp_path / "label.json", "--queries", tmp_path / "test.jsonl", "--k", "1,5",
            "--metrics", "r_cap@5,mrr@1", "--out", out)
    assert p.code == 0, p.stderr
    assert {"run.jsonl", "run.trec", "metrics.json", "meta.json"} <= {x.name for x in
                                                                       out.iterdir()}
    meta = json.loads((out / "meta.json").read_text("utf-8"))
    assert meta["backend"] == "faiss" and meta["index_type"] == "Flat"
    assert "elasticsearch" not in meta
    assert set(json.loads((out / "metrics.json").read_text("utf-8"))["metrics"]) >= {
        "r_cap@5", "mrr@1", "recall@1", "hit@5"}
    bad = cli("eval", "--index-type", "ivf", "--model", f"hf:{tiny_bert_dir}", "--queries",
              tmp_path / "test.jsonl", "--out", out)
    assert bad.code != 0 and "add backend: faiss" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    assert no_node == []  # eval --backend faiss never asked for the node


def test_run_backend_override_keeps_the_file_and_writes_beside_it(
        no_node: list[str], tiny_bert_dir: Path, tmp_path: Path, cli) -> None:  # noqa: ANN001
    """`run EXP --backend faiss` on an experiment written for Elasticsearch HNSW: faiss Flat,
    results in <out>-faiss-flat, the experiment file untouched, no node asked."""
    import yaml

    _write_label_data(tmp_path)
    exp = tmp_path / "exp.yaml"
    text = yaml.safe_dump({
        "name": "over", "corpus": {"path": "label.json"}, "queries": [{"path": "test.jsonl"}],
        "metrics": ["hit@1", "mrr@5"],
        "index": {"type": "hnsw", "m": 8, "ef_construction": 50, "num_candidates": 20},
        "models": ["bm25", {"name": "tiny", "type": "hf", "path": str(tiny_bert_dir)}]})
    exp.write_text(text, "utf-8")
    p = cli("run", exp, "--backend", "faiss", "-m", "tiny")
    assert p.code == 0, p.stderr
    d = tmp_path / "runs" / "over-faiss-flat" / "test" / "tiny"
    meta = json.loads((d / "meta.json").read_text("utf-8"))
    assert meta["backend"] == "faiss" and meta["index_type"] == "Flat"
    assert not (tmp_path / "runs" / "over").exists() and exp.read_text("utf-8") == text
    p = cli("run", exp, "--backend", "faiss", "--index-type", "hnsw", "-m", "tiny")
    assert p.code == 0, p.stderr
    meta = json.loads((tmp_path / "runs" / "over-faiss-hnsw" / "test" / "tiny" /
                       "meta.json").read_text("utf-8"))
    assert meta["index_type"] == "HNSW8 (efConstruction 50, efSearch 20)"
    assert no_node == []
    bad = cli("run", exp, "--index-type", "ivf", "-m", "tiny")
    assert bad.code != 0 and "add backend: faiss" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_index_overrides() -> None:
    es = IndexConfig(type="hnsw", m=8, num_candidates=50)
    fa = es.overridden("faiss")
    assert (fa.backend, fa.type, fa.m, fa.num_candidates) == ("faiss", "flat", None, 50)
    hn = es.overridden("faiss", "hnsw")
    assert (hn.type, hn.m) == ("hnsw", 8)
    ivf = IndexConfig(backend="faiss", type="ivf", nlist=16)
    assert ivf.overridden("faiss").type == "ivf"  # same backend: the file's type stays
    back = ivf.overridden("elasticsearch")
    assert (back.backend, back.type, back.nlist) == ("elasticsearch", "hnsw", None)
    assert es.overridden(index_type="flat").type == "flat"
    with pytest.raises(ConfigError, match="faiss offers flat, hnsw and ivf"):
        es.overridden("faiss", "int8_hnsw")
    with pytest.raises(ConfigError, match="index: Input should be"):
        es.overridden("lucene")


@pytest.mark.es
@pytest.mark.slow
def test_faiss_flat_ranks_like_elasticsearch_flat_with_minilm(
        es_node, es_prefix: str, shared_data: Path, minilm_dir: Path,  # noqa: ANN001
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The bundled all-MiniLM-L6-v2 on a Cranfield subset (the first 300 abstracts and the
    queries judged on them): one encode, the same vectors in an ES `flat` index and a faiss
    Flat index, the same ranking wherever two scores are not within float32 noise."""
    from embedarena.data.datasets import load_dataset
    from embedarena.data.types import Corpus, Query, QuerySet
    from embedarena.embedders.cache import CachedEmbedder
    from embedarena.embedders.registry import create_embedder
    from embedarena.evaluation.metrics import evaluate
    from embedarena.evaluation.rows import DenseRow
    from embedarena.indexer.build import IndexOptions
    from embedarena.indexer.es import Target

    monkeypatch.setenv("EMBEDARENA_SHARED_DATA", str(shared_data))
    full, sets = load_dataset("cranfield")
    corpus = Corpus(full.ids[:300], full.texts[:300], "cranfield[:300]")
    keep = set(corpus.ids)
    queries = []
    for q in next(iter(sets.values())).queries:
        gold = {d: g for d, g in q.gold.items() if d in keep}
        if any(g > 0 for g in gold.values()):
            queries.append(Query(q.qid, q.text, gold))
    qs = QuerySet("cranfield-300", queries)
    assert len(queries) > 40
    spec = parse({"name": "minilm", "type": "hf", "path": str(minilm_dir), "max_length": 128})
    emb = CachedEmbedder(create_embedder(spec), tmp_path / "cache")  # encode once, for both
    es_ctx = RowContext(es_node.client, Target([es_node.url], "basic", False),
                        IndexOptions(type="flat"), prefix=es_prefix, cache=False)
    es_row = DenseRow(spec, es_ctx, embedder=emb)
    fa_row = FaissDenseRow(spec, RowContext(backend="faiss", cache=False), embedder=emb)
    es_row.build(corpus)
    encoded = emb.misses
    fa_row.build(corpus)
    assert 0 < encoded <= len(corpus) and emb.misses == encoded  # encoded once, for both
    a = es_row.search(qs, 100, corpus_sha=corpus.sha256())
    b = fa_row.search(qs, 100, corpus_sha=corpus.sha256())
    assert a.meta["index_options"]["type"] == "flat" and b.meta["index_type"] == "Flat"
    near_ties = 0
    for ra, rb in zip(a.results, b.results, strict=True):
        assert rb.scores == pytest.approx(ra.scores, abs=2e-6)
        for r, s in enumerate(ra.scores):
            if any(abs(s - t) <= 2e-6 for j, t in enumerate(ra.scores) if j != r):
                near_ties += 1
            else:
                assert ra.retrieved[r] == rb.retrieved[r], (ra.qid, r)
    assert near_ties < 0.01 * len(queries) * 100
    names = ["recall@1", "recall@10", "recall@100", "mrr@1", "mrr@10", "mrr@100", "ndcg@10"]
    ma, mb = evaluate(a, names), evaluate(b, names)
    for m in names:
        assert mb.mean(m) == pytest.approx(ma.mean(m), abs=1e-3), m


@pytest.mark.es
def test_with_a_node_bm25_searches_it_and_dense_rows_stay_in_process(
        es_node, es_prefix: str, tiny_bert_dir: Path, tmp_path: Path,  # noqa: ANN001
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`backend: faiss` next to a node: the bm25 row on Elasticsearch, the embedder row in
    faiss, each run directory saying which; no dense index is made on the node."""
    for k, v in es_node.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("EMBEDARENA_HOME", str(tmp_path / "home"))
    _write_label_data(tmp_path)
    exp = ea.Experiment(name="mixed", corpus={"path": str(tmp_path / "label.json")},
                        queries=[{"path": str(tmp_path / "test.jsonl"), "name": "q"}],
                        metrics=["hit@1", "mrr@5"],
                        index={"backend": "faiss", "prefix": es_prefix},
                        models=["bm25", {"name": "tiny", "type": "hf",
                                         "path": str(tiny_bert_dir)}], out=tmp_path / "out")
    res = ea.run_experiment(exp)
    assert res.comparison.value("bm25", "q", "hit@1") == 1.0  # exact label text matches
    metas = {m: json.loads((tmp_path / "out" / "q" / m / "meta.json").read_text("utf-8"))
             for m in ("bm25", "tiny")}
    assert metas["bm25"]["backend"] == "elasticsearch" and metas["bm25"]["elasticsearch"]
    assert metas["tiny"]["backend"] == "faiss" and "elasticsearch" not in metas["tiny"]
    on_node = list(es_node.client.indices.get(index=f"{es_prefix}*", expand_wildcards="all"))
    assert on_node and all("bm25" in name for name in on_node), on_node
