"""Cost and latency beside the metrics (issue 13): what every run records in meta.json, and
`compare --columns` / the report showing it. Timings are checked for presence, sign and
consistency only (p50 <= p95), never against a wall-clock bound."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import embedarena as ea
from embedarena.errors import ConfigError
from embedarena.evaluation.compare import Comparison, parse_columns
from embedarena.evaluation.costs import cost_meta, latency
from embedarena.evaluation.metrics import evaluate
from embedarena.evaluation.run import QueryResult, Run

LABELS = ["甲状腺结节", "甲状腺癌", "胆管炎", "胰腺囊肿", "宫颈上皮内瘤变", "子宫肌瘤", "高血压",
          "糖尿病", "肝硬化", "胆囊结石"]
QUERIES = [("甲状腺", "甲状腺癌"), ("胆管", "胆管炎"), ("血压高", "高血压"), ("肝", "肝硬化"),
           ("子宫", "子宫肌瘤")]


def _write_inputs(tmp_path: Path) -> tuple[Path, Path]:
    corpus = tmp_path / "label.json"
    corpus.write_text(json.dumps(LABELS, ensure_ascii=False), encoding="utf-8")
    queries = tmp_path / "q.jsonl"
    queries.write_text("".join(json.dumps({"query": q, "pos": [g]}, ensure_ascii=False) + "\n"
                               for q, g in QUERIES), encoding="utf-8")
    return corpus, queries


def _meta(d: Path) -> dict[str, Any]:
    return dict(json.loads((d / "meta.json").read_text(encoding="utf-8")))


def _check_latency(lat: dict[str, Any], embeds: bool, n_queries: int | None) -> None:
    """`n_queries`: one search sample per query (Elasticsearch `took`); None: one per round
    (faiss, the round's time over its size)."""
    keys = ["search_query", "search_batch"] + (["embed_query", "embed_batch"] if embeds else [])
    for key in keys:
        part = lat[key]
        # Elasticsearch's took is whole milliseconds: a fast search may take 0
        low = 0 if key == "search_query" and n_queries else 1e-9
        assert low <= part["p50_ms"] <= part["p95_ms"], (key, part)
        assert part["mean_ms"] >= low and part["n"] >= 1
    assert lat["search_query"]["n"] == (n_queries or lat["search_batch"]["n"])
    if embeds:
        assert lat["embed_query"]["n"] == lat["embed_batch"]["n"]  # one sample per batch
        # per query = the batch's time over its size: never above the batch time
        assert lat["embed_query"]["p95_ms"] <= lat["embed_batch"]["p95_ms"]
    else:
        assert "embed_query" not in lat


# -- pure parts ------------------------------------------------------------------------------
def test_latency_percentiles_and_per_item() -> None:
    got = latency([0.010, 0.020, 0.030, 0.040])
    assert got is not None and got["n"] == 4
    assert got["p50_ms"] == pytest.approx(25.0) and got["p95_ms"] == pytest.approx(38.5)
    per = latency([0.064, 0.032], per=[64, 16])
    assert per is not None and per["p50_ms"] == pytest.approx(1.5)
    assert latency([]) is None


def test_cost_from_the_price_table_only() -> None:
    class Spec:
        name = "small"
        deployment = "my-embedder"
        model = "text-embedding-3-small"

        def model_family(self) -> str:
            return "text-embedding-3-small"

    got = cost_meta(1234, Spec(), {"text-embedding-3-small": 0.02})
    assert got == {"tokens": 1234, "usd_per_1m_tokens": 0.02,
                   "price_key": "text-embedding-3-small", "usd": pytest.approx(1234 * 0.02 / 1e6)}
    # the deployment name wins over the model family
    assert cost_meta(10, Spec(), {"text-embedding-3-small": 0.02,
                                  "my-embedder": 0.5})["price_key"] == "my-embedder"
    assert cost_meta(10, Spec(), {"text-embedding-3-large": 0.13}) is None  # no price: no cost
    assert cost_meta(10, Spec(), None) is None


def test_parse_columns_groups_and_unknown() -> None:
    assert parse_columns("search_ms,cost") == ["search_ms", "tokens", "price", "cost_usd"]
    assert parse_columns(["latency", "embed_ms"])[:2] == ["embed_ms", "embed_p95_ms"]
    with pytest.raises(ConfigError, match="unknown column 'speed'.*embed_ms"):
        parse_columns("speed")


def test_comparison_extra_columns_blank_where_not_recorded() -> None:
    run = Run("a", "q", [QueryResult("1", "x", {"d": 1}, ["d"], [1.0])])
    m = evaluate(run, ["hit@1"])
    comp = Comparison(extra=["search_ms", "cost_usd"])
    comp.add("priced", "q", m, meta={"latency": {"search_query": {"p50_ms": 1.25}},
                                     "cost": {"usd": 0.000123}})
    comp.add("free", "q", m, meta={"latency": {"search_query": {"p50_ms": 2.5}}})
    md = comp.to_markdown()
    assert "| model | hit@1 | search_ms | cost_usd |" in md
    assert "| priced | **100.0** | 1.25 | 0.000123 |" in md
    assert "| free | **100.0** | 2.5 |  |" in md  # no price: an empty cell, not 0
    rows = {r["model"]: r for r in comp.to_json()["rows"]}
    assert rows["free"]["columns"] == {"search_ms": 2.5, "cost_usd": None}
    assert comp.to_csv().splitlines()[0].endswith("hit@1,search_ms,cost_usd")
    assert "search_ms" not in Comparison().to_markdown()  # default tables unchanged


# -- real runs ---------------------------------------------------------------------------------
@pytest.mark.es
def test_es_rows_record_latency_size_tokens_and_cost(
        es_node, es_prefix: str, tmp_path: Path,  # noqa: ANN001
        monkeypatch: pytest.MonkeyPatch, cli) -> None:  # noqa: ANN001
    pytest.importorskip("openai")
    from embedarena.embedders.azure_openai import token_tools
    from tests.embedders.azure_server import EmbeddingAPIServer

    for k, v in es_node.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("EMBEDARENA_HOME", str(tmp_path / "home"))
    corpus, queries = _write_inputs(tmp_path)
    with EmbeddingAPIServer() as srv:
        monkeypatch.setenv("AZURE_OPENAI_API_KEY", srv.api_key)
        azure = {"type": "azure_openai", "azure_endpoint": srv.url, "dimensions": 64}
        exp = ea.Experiment(
            name="cost", corpus={"path": corpus}, queries=[{"path": queries, "name": "q"}],
            metrics=["precise@1", "hit@5"], index={"prefix": es_prefix, "type": "flat"},
            prices={"text-embedding-3-small": 0.02},
            models=["bm25", {"name": "small", "deployment": "text-embedding-3-small", **azure},
                    {"name": "large", "deployment": "text-embedding-3-large", **azure},
                    {"name": "hyb", "hybrid": ["bm25", "small"], "engine": "client"}],
            out=tmp_path / "out")
        ea.run_experiment(exp, search=False)  # index only
        srv.requests.clear()
        ea.run_experiment(exp)
        sent = [t for r in srv.embedding_requests() if r.deployment == "text-embedding-3-small"
                for t in r.inputs]
    out = tmp_path / "out"
    # the queries, once each (the hybrid's member search finds them in the embedding cache)
    assert sorted(sent) == sorted(q for q, _ in QUERIES)
    small, large, bm25 = (_meta(out / "q" / n) for n in ("small", "large", "bm25"))
    members = _meta(out / "q" / "hyb")["members_cost"]
    assert set(members) == {"bm25", "small"} and members["small"]["index_size"] == \
        small["index_size"] and members["small"]["api"]["tokens_sent"] == 0  # cached
    count, _, exact = token_tools("text-embedding-3-small")
    assert small["api"]["tokens_sent"] == sum(count(t) for t in sent) > 0
    assert small["api"]["tokens_counted_with"].startswith("tiktoken" if exact else "utf-8")
    assert small["cost"] == {"tokens": small["api"]["tokens_sent"], "usd_per_1m_tokens": 0.02,
                             "price_key": "text-embedding-3-small",
                             "usd": pytest.approx(small["api"]["tokens_sent"] * 0.02 / 1e6)}
    assert large["api"]["tokens_sent"] > 0 and "cost" not in large  # no price, no cost
    assert "api" not in bm25 and "cost" not in bm25
    for meta, embeds in ((small, True), (large, True), (bm25, False)):
        _check_latency(meta["latency"], embeds, len(QUERIES))
        size = meta["index_size"]
        assert size["docs"] == len(LABELS) and size["bytes"] > 0
        assert size["bytes_per_vector"] == pytest.approx(size["bytes"] / len(LABELS), abs=0.1)
    # 64 float dims per document at least (the vector itself; HNSW-less flat index here)
    assert small["index_size"]["bytes_per_vector"] > 64 * 4

    res = cli("compare", out, "-m", "precise@1", "--columns", "search_ms,size,cost",
              "--out", tmp_path / "cmp")
    assert res.code == 0, res.stderr
    for col in ("search_ms", "index_mb", "bytes_per_vector", "tokens", "price", "cost_usd"):
        assert col in res.stdout
    rows = {r["model"]: r["columns"] for r in json.loads(
        (tmp_path / "cmp" / "comparison.json").read_text(encoding="utf-8"))["rows"]}
    assert rows["small"]["cost_usd"] == pytest.approx(small["cost"]["usd"])
    assert rows["small"]["price"] == 0.02 and rows["small"]["tokens"] == small["cost"]["tokens"]
    assert rows["large"]["tokens"] > 0 and rows["large"]["cost_usd"] is None
    assert rows["bm25"]["tokens"] is None and rows["bm25"]["index_mb"] > 0
    assert rows["bm25"]["search_ms"] == bm25["latency"]["search_query"]["p50_ms"]
    md = (tmp_path / "cmp" / "comparison.md").read_text(encoding="utf-8")
    large_row = next(ln for ln in md.splitlines() if ln.startswith("| large |"))
    assert large_row.endswith("|  |  |")  # tokens shown, no price and no cost: empty, not 0
    plain = cli("compare", out, "-m", "precise@1")
    assert "search_ms" not in plain.stdout and "cost_usd" not in plain.stdout

    from embedarena.evaluation.report import ReportOptions, build_report

    report = build_report([out], ReportOptions(columns=["cost"], formats=["md"]))
    assert report.comparison.extra_value("small", "q", "cost_usd") == pytest.approx(
        small["cost"]["usd"])


def test_faiss_rows_record_in_memory_size_and_latency(
        tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDARENA_HOME", str(tmp_path / "home"))
    corpus, queries = _write_inputs(tmp_path)
    exp = ea.Experiment(
        name="f", corpus={"path": corpus}, queries=[{"path": queries, "name": "q"}],
        metrics=["hit@2"], index={"backend": "faiss"},
        models=[{"name": "tiny", "type": "hf", "path": str(tiny_bert_dir)}],
        out=tmp_path / "out")
    ea.run_experiment(exp)
    meta = _meta(tmp_path / "out" / "q" / "tiny")
    dim = 32  # the tiny BERT's hidden size (tests/conftest.py make_tiny_bert)
    assert meta["index_size"] == {"bytes": len(LABELS) * dim * 4, "docs": len(LABELS),
                                  "bytes_per_vector": float(dim * 4),
                                  "source": "faiss index in memory"}
    _check_latency(meta["latency"], True, None)
    assert meta["latency"]["search_query_source"].startswith("faiss")
    assert "api" not in meta and "cost" not in meta


def test_faiss_memory_size_of_approximate_indexes() -> None:
    pytest.importorskip("faiss")
    import numpy as np

    from embedarena.indexer.faiss_index import FaissIndex, FaissOptions

    docs = np.random.default_rng(0).standard_normal((200, 16)).astype(np.float32)
    flat = FaissIndex(docs, "cosine").memory_bytes()
    hnsw = FaissIndex(docs, "cosine", FaissOptions(type="hnsw")).memory_bytes()
    assert flat == 200 * 16 * 4
    assert hnsw > flat  # the vectors plus the graph


def test_prices_from_the_config_file_and_checked(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from embedarena.settings import load_prices

    cfg = tmp_path / "embedarena.toml"
    cfg.write_text('[prices]\n"text-embedding-3-small" = 0.02\nmy-deployment = 1\n',
                   encoding="utf-8")
    monkeypatch.setenv("EMBEDARENA_CONFIG", str(cfg))
    assert load_prices() == {"text-embedding-3-small": 0.02, "my-deployment": 1.0}
    cfg.write_text('[prices]\nx = "cheap"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="price of 'x' must be a non-negative number"):
        load_prices()
    with pytest.raises(ValueError, match="prices must be >= 0"):
        ea.Experiment(name="p", models=["bm25"], prices={"a": -1})
