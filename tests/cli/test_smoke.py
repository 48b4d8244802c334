"""One subprocess per command: `python -m embedarena CMD ...` exactly as a user starts it (the
`__main__` module, real streams, real exit status), small and quick. Every other CLI test runs
in process through the `cli` fixture (tests/conftest.py), which calls the same `main()`.

Commands: es, data, index, eval, compare, ann-check, run, tune-fusion, calibrate, report, mine,
train, eval-rerank.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from embedarena.evaluation.metrics import evaluate
from embedarena.evaluation.run import QueryResult, Run
from tests.training.conftest import toy_rows, write_jsonl

LABELS = ["甲状腺结节", "甲状腺癌", "胆管炎", "胰腺囊肿", "宫颈上皮内瘤变", "子宫肌瘤", "高血压",
          "糖尿病", "肝硬化", "乳腺癌"]
QUERIES: list[dict[str, object]] = [
    {"query": "脖子前面有个肿块，B超说是甲状腺结节", "pos": ["甲状腺结节"]},
    {"query": "甲状腺结节穿刺结果是甲状腺癌", "pos": ["甲状腺结节", "甲状腺癌"]},
    {"query": "右上腹痛发烧黄疸，胆管炎吗", "pos": ["胆管炎"]},
    {"query": "血糖高口渴多尿，是糖尿病吗", "pos": ["糖尿病"]},
    {"query": "血压160/100头晕，高血压", "pos": ["高血压"]},
]


def embedarena(*args: object, env: dict[str, str] | None = None, cwd: Path | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "embedarena", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


def _data(d: Path) -> tuple[Path, Path]:
    corpus = d / "label.json"
    corpus.write_text(json.dumps(LABELS, ensure_ascii=False), encoding="utf-8")
    queries = write_jsonl(d / "test.jsonl", QUERIES)
    return corpus, queries


def _saved_runs(root: Path, query_set: str = "原数据", seed: int = 0) -> Path:
    """Two models' run directories under ROOT/<set>/<model>, as `embedarena run` writes them."""
    rng = random.Random(seed)
    for model in ("bge", "acge"):
        results = []
        for i, lab in enumerate(LABELS):
            others = [x for x in LABELS if x != lab]
            rng.shuffle(others)
            ranked = others[:4]
            ranked.insert(rng.randint(0, 4), lab)
            results.append(QueryResult(f"q{i}", f"我有{lab}能买保险吗", {lab: 1.0}, ranked,
                                       [1.0 - j / 10 for j in range(len(ranked))]))
        run = Run(model, query_set, results)
        d = root / query_set / model
        run.save(d)
        evaluate(run, "precise@1,2,5;mrr@5").save(d / "metrics.json")
    return root


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


# -- es ---------------------------------------------------------------------------------------
@pytest.mark.es
def test_es_status(es_node, tmp_path: Path) -> None:  # noqa: ANN001
    p = embedarena("es", "status", env=es_node.env, cwd=tmp_path, timeout=120)
    assert p.returncode == 0, p.stderr
    assert f"cluster: {es_node.url}" in p.stdout and "auth: basic" in p.stdout
    assert "health:" in p.stdout
    assert es_node.password not in p.stdout + p.stderr


# -- data -------------------------------------------------------------------------------------
def test_data_inspect_bad_file_is_one_line_and_exit_4(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "a", "pos": ["x"]}\n{"query": "b", "pos": 3}\n', encoding="utf-8")
    p = embedarena("data", "inspect", bad, timeout=60)
    assert p.returncode == 4
    assert f"{bad}:line 2: field 'pos' must be a list of strings" in _one_line(p.stderr)
    assert "Traceback" not in p.stderr


# -- index ------------------------------------------------------------------------------------
@pytest.mark.es
def test_index_build(es_node, es_prefix: str, tmp_path: Path) -> None:  # noqa: ANN001
    corpus, _ = _data(tmp_path)
    p = embedarena("index", "build", "--model", "bm25", "--corpus", corpus, "--prefix",
                   es_prefix, env={**es_node.env, "EMBEDARENA_HOME": str(tmp_path / "home")})
    assert p.returncode == 0, p.stderr
    assert f"{len(LABELS)} documents" in p.stderr
    assert es_node.client.indices.exists_alias(name=f"{es_prefix}bm25")


# -- eval -------------------------------------------------------------------------------------
@pytest.mark.es
def test_eval(es_node, es_prefix: str, tmp_path: Path) -> None:  # noqa: ANN001
    corpus, queries = _data(tmp_path)
    out = tmp_path / "run"
    p = embedarena("eval", "--model", "bm25", "--queries", queries, "--corpus", corpus,
                   "--k", "1,5", "--out", out, "--prefix", es_prefix,
                   env={**es_node.env, "EMBEDARENA_HOME": str(tmp_path / "home")})
    assert p.returncode == 0, p.stderr
    assert len((out / "run.jsonl").read_text(encoding="utf-8").splitlines()) == len(QUERIES)
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["metrics"]
    assert 0 < metrics["hit@5"] <= 1
    assert "precise@1" in p.stdout and "bm25" in p.stdout


# -- run --------------------------------------------------------------------------------------
@pytest.mark.es
def test_run(es_node, es_prefix: str, tiny_bert_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    _data(tmp_path)
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        "name: smoke\n"
        "corpus: {path: label.json}\n"
        "queries: [{path: test.jsonl, name: 原数据}]\n"
        "metrics: [precise@1, hit@5]\n"
        f"index: {{type: flat, prefix: {es_prefix}}}\n"
        f"models: [bm25, {{name: tiny, type: hf, path: {tiny_bert_dir}, device: cpu}}]\n"
        "report: {formats: [md]}\n", encoding="utf-8")
    p = embedarena("run", exp, env={**es_node.env, "EMBEDARENA_HOME": str(tmp_path / "home")})
    assert p.returncode == 0, p.stderr[-3000:]
    out = tmp_path / "runs" / "smoke"
    models = json.loads((out / "experiment.json").read_text(encoding="utf-8"))["models"]
    assert [m["model"] for m in models] == ["bm25", "tiny"]
    for m in ("bm25", "tiny"):
        rows = (out / "原数据" / m / "run.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(rows) == len(QUERIES)
    assert (out / "report" / "report.md").is_file()
    assert "原数据" in p.stdout and "tiny" in p.stdout and "precise@1" in p.stdout


# -- compare ----------------------------------------------------------------------------------
def test_compare(tmp_path: Path) -> None:
    runs = _saved_runs(tmp_path / "runs")
    out = tmp_path / "cmp"
    p = embedarena("compare", runs, "--metrics", "precise@1,mrr@5", "--out", out, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "bge" in p.stdout and "acge" in p.stdout and "mrr@5" in p.stdout
    assert (out / "comparison.md").is_file()


# -- ann-check --------------------------------------------------------------------------------
def test_ann_check_without_hnsw_runs(tmp_path: Path) -> None:
    """Nothing to check (saved runs of no kNN search): listed, exit 0, no node asked for."""
    from embedarena.indexer.node import free_port

    runs = _saved_runs(tmp_path / "runs")
    p = embedarena("ann-check", runs, env={"EMBEDARENA_ES_URL": f"http://127.0.0.1:{free_port()}"},
                   timeout=120)
    assert p.returncode == 0, p.stderr
    assert "not a dense kNN run" in p.stderr and "no HNSW runs to check" in p.stderr


# -- tune-fusion ------------------------------------------------------------------------------
@pytest.mark.es
def test_tune_fusion(es_node, es_prefix: str, tmp_path: Path) -> None:  # noqa: ANN001
    _data(tmp_path)
    write_jsonl(tmp_path / "q.jsonl", [
        {"query": q.format(lab), "pos": [lab]} for lab in LABELS
        for q in ("我有{}能买保险吗", "{}怎么治疗")])
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        "name: tune-smoke\n"
        "corpus: {path: label.json}\n"
        "queries: [{path: q.jsonl, name: q}]\n"
        "metrics: [precise@1, mrr@5]\n"
        f"index: {{prefix: {es_prefix}}}\n"
        "models: [bm25, 'bm25:bigram', {name: hyb, hybrid: [bm25, bm25-bigram], fusion: rrf}]\n",
        encoding="utf-8")
    p = embedarena("tune-fusion", exp, "--objective", "mrr@5", "--step", "0.5", "--rrf-k",
                   "1,60", "--out", tmp_path / "out", env=es_node.env)
    assert p.returncode == 0, p.stderr
    data = json.loads((tmp_path / "out" / "tune.json").read_text(encoding="utf-8"))
    dev, test = set(data["dev_qids"]), set(data["test_qids"])
    assert dev and test and not dev & test and len(dev | test) == 2 * len(LABELS)
    assert data["best"]["fusion"] in ("rrf", "weighted")


# -- calibrate --------------------------------------------------------------------------------
def _scored_runs(root: Path, prefix: str, seed: int) -> None:
    """A third of the queries have no gold and score low: a threshold can separate them."""
    rnd = random.Random(seed)
    results = []
    for i in range(30):
        nm = i % 3 == 0
        top = rnd.uniform(0, 0.3) if nm else rnd.uniform(0.7, 1)
        results.append(QueryResult(f"{i}", f"{prefix} {i}", {} if nm else {f"g{i}": 1.0},
                                   [f"g{i}", "x"], [top, top / 2]))
    Run("m1", prefix, results).save(root / "m1")


def test_calibrate(tmp_path: Path) -> None:
    _scored_runs(tmp_path / "dev", "dev", 1)
    _scored_runs(tmp_path / "test", "test", 2)
    p = embedarena("calibrate", tmp_path / "test", "--dev", tmp_path / "dev", "--k", "1",
                   timeout=120)
    assert p.returncode == 0, p.stderr
    data = json.loads((tmp_path / "test" / "calibration.json").read_text(encoding="utf-8"))
    (m,) = data["models"]
    assert m["model"] == "m1" and 0.3 <= m["threshold"] <= 0.7
    assert "m1" in p.stdout


# -- report -----------------------------------------------------------------------------------
def test_report(tmp_path: Path) -> None:
    runs = _saved_runs(tmp_path / "runs")
    out = tmp_path / "rep"
    p = embedarena("report", runs, "--out", out, "--formats", "md", "--baseline", "acge",
                   "--resamples", "200", timeout=120)
    assert p.returncode == 0, p.stderr
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Against acge" in md and "| 原数据 | bge |" in md


# -- mine -------------------------------------------------------------------------------------
def test_mine(tmp_path: Path) -> None:
    corpus, _ = _data(tmp_path)
    src = write_jsonl(tmp_path / "train.jsonl", [{**q, "neg": []} for q in QUERIES])
    out = tmp_path / "mined.jsonl"
    p = embedarena("mine", src, out, "--model", "bm25", "--range", "0-10", "-n", "3",
                   "--candidate-pool", corpus, env={"EMBEDARENA_HOME": str(tmp_path / "home")},
                   timeout=120)
    assert p.returncode == 0, p.stderr
    got = [json.loads(ln) for ln in out.read_text(encoding="utf-8").splitlines()]
    assert [g["query"] for g in got] == [q["query"] for q in QUERIES]
    for g, q in zip(got, QUERIES, strict=True):  # BM25 finds only labels sharing a term
        assert set(g["neg"]) <= set(LABELS) - set(q["pos"])  # type: ignore[arg-type]
    assert sum(len(g["neg"]) for g in got) > 0
    assert f"mined {out}" in " ".join(p.stdout.split())


# -- train ------------------------------------------------------------------------------------
def test_train_embedder(tiny_bert_dir: Path, tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", toy_rows(8))
    out = tmp_path / "out"
    p = embedarena("train", "embedder", "-m", tiny_bert_dir, "-t", train, "-o", out,
                   "--max-steps", "2", "--batch-size", "2", "--train-group-size", "2",
                   "--report-to", "none", "--cpu", cwd=tmp_path,
                   env={"EMBEDARENA_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    assert "trained 2 steps" in p.stdout
    assert (out / "model.safetensors").is_file() and (out / "modules.json").is_file()


# -- eval-rerank ------------------------------------------------------------------------------
def test_eval_rerank(tiny_reranker_dir: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "rerank.jsonl", [
        {"query": q["query"], "positive": q["pos"],
         "negative": [x for x in LABELS if x not in q["pos"]][:4]} for q in QUERIES])
    out = tmp_path / "rr"
    p = embedarena("eval-rerank", data, "--model", f"reranker:{tiny_reranker_dir}",
                   "--out", out, env={"EMBEDARENA_HOME": str(tmp_path / "home"),
                                      "OMP_NUM_THREADS": "1"}, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads((out / "rerank.json").read_text(encoding="utf-8"))
    assert summary["n_evaluated"] == len(QUERIES) and 0 <= summary["metrics"]["map"] <= 1
    assert "MAP" in p.stdout and tiny_reranker_dir.name in p.stdout
