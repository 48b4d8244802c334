"""The core loop as a user runs it: `index build`, `eval`, `run`, `compare` through the real
`main()` (in process; tests/cli/test_smoke.py starts each command once as a subprocess), against
the real node, with a tiny encoder (fast) and with the real MiniLM on real data (slow).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult

LABELS = ["甲状腺结节", "甲状腺癌", "胆管炎", "胰腺囊肿", "宫颈上皮内瘤变", "子宫肌瘤", "高血压",
          "糖尿病", "肝硬化", "乳腺癌"]


@pytest.fixture
def embedarena(cli: Callable[..., CliResult], env: dict[str, str]
               ) -> Callable[..., CliResult]:
    """`embedarena("eval", ...)`: embedarena in process with the test node's env."""
    return lambda *args: cli(*args, env=env)


@pytest.fixture
def env(es_node, es_prefix: str, tmp_path: Path) -> dict[str, str]:  # noqa: ANN001
    """The test node's URL and password file; a private state dir (embedding cache)."""
    return {**es_node.env, "EMBEDARENA_HOME": str(tmp_path / "home")}


def _write_data(d: Path, bad_line: bool) -> tuple[Path, Path, list[dict[str, object]]]:
    corpus = d / "label.json"
    corpus.write_text(json.dumps(LABELS, ensure_ascii=False), encoding="utf-8")
    rows: list[dict[str, object]] = [
        {"query": "脖子前面有个肿块，B超说是结节", "pos": ["甲状腺结节"]},
        {"query": "甲状腺结节穿刺结果是恶性", "pos": ["甲状腺结节", "甲状腺癌"]},
        {"query": "右上腹痛发烧黄疸", "pos": ["胆管炎"]},
        {"query": "血糖高口渴多尿", "pos": ["糖尿病"]},
        {"query": "血压160/100头晕", "pos": ["高血压"]},
    ]
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    if bad_line:
        lines.insert(2, '{"query": "肝区不适", "pos": ["肝硬化"]')  # truncated JSON
    queries = d / "test.jsonl"
    queries.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return corpus, queries, rows


def _precise_at(run_jsonl: Path, k: int) -> float:
    """precise@k straight from run.jsonl, independently of the metrics module."""
    rows = [json.loads(ln) for ln in run_jsonl.read_text(encoding="utf-8").splitlines()]
    return sum(set(r["gold"]) <= set(r["retrieved"][:k]) for r in rows) / len(rows)


@pytest.mark.es
def test_inline_build_then_eval_with_bad_line(embedarena: Callable[..., CliResult],
                                              es_prefix: str, tiny_bert_dir: Path,
                                              tmp_path: Path) -> None:
    corpus, queries, rows = _write_data(tmp_path, bad_line=True)
    model = f"hf:{tiny_bert_dir}"

    built = embedarena("index", "build", "--model", model, "--model", "bm25", "--corpus",
                       str(corpus), "--prefix", es_prefix)
    assert built.code == 0, built.stderr
    assert f"{len(LABELS)} documents" in built.stderr

    out = tmp_path / "run"
    bad = embedarena("eval", "--model", model, "--queries", str(queries), "--k", "1,2,5",
                     "--out", str(out), "--prefix", es_prefix)
    assert bad.code != 0
    assert f"{queries}:line 3" in bad.stderr and "Traceback" not in bad.stderr
    assert not out.exists()

    ok = embedarena("eval", "--model", model, "--model", "bm25", "--queries", str(queries),
                    "--k", "1,2,5", "--out", str(out), "--prefix", es_prefix, "--corpus",
                    str(corpus), "--skip-bad")
    assert ok.code == 0, ok.stderr
    assert "skipped 1 of 6" in " ".join(ok.stderr.split())
    for name in (tiny_bert_dir.name, "bm25"):
        run_dir = out / name
        run_rows = run_dir.joinpath("run.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(run_rows) == len(rows)  # counts in == counts out (minus the skipped line)
        metrics = json.loads(run_dir.joinpath("metrics.json").read_text())["metrics"]
        for k in (1, 2, 5):
            assert metrics[f"precise@{k}"] == pytest.approx(
                _precise_at(run_dir / "run.jsonl", k))
        trec = [ln.split() for ln in run_dir.joinpath("run.trec").read_text().splitlines()]
        assert {t[0] for t in trec} == {json.loads(r)["qid"] for r in run_rows}
        if name != "bm25":  # dense search always fills the depth; BM25 only returns matches
            assert len(trec) == len(rows) * len(LABELS)
    # the table on stdout has both models and the seed's columns
    assert "precise@1" in ok.stdout and "bm25" in ok.stdout and tiny_bert_dir.name in ok.stdout


@pytest.mark.es
def test_run_experiment_reuses_indexes_and_cache_then_compare(
        embedarena: Callable[..., CliResult], es_prefix: str, tiny_bert_dir: Path,
        tmp_path: Path) -> None:
    corpus, queries, rows = _write_data(tmp_path, bad_line=False)
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        "name: loop\n"
        "corpus: {path: label.json}\n"
        "queries: [{path: test.jsonl, name: 原数据}]\n"
        "metrics: [precise@1, precise@2, precise@5, hit@5]\n"
        f"index: {{type: flat, prefix: {es_prefix}}}\n"
        f"models: [bm25, {{name: tiny, type: hf, path: {tiny_bert_dir}, pooling: cls}}]\n"
        "report: {formats: [md, xlsx]}\n", encoding="utf-8")

    first = embedarena("run", str(exp))
    assert first.code == 0, first.stderr
    out = tmp_path / "runs" / "loop"
    summary = {m["model"]: m for m in json.loads((out / "experiment.json").read_text())["models"]}
    assert not summary["tiny"]["reused_index"]
    assert summary["tiny"]["cache"]["misses"] == len(LABELS) + len(rows)
    assert (out / "report" / "report.md").is_file() and (out / "report" / "report.xlsx").is_file()

    second = embedarena("run", str(exp), "--no-report")
    assert second.code == 0, second.stderr
    assert "reused index" in second.stderr
    summary = {m["model"]: m for m in json.loads((out / "experiment.json").read_text())["models"]}
    assert summary["tiny"]["reused_index"] and summary["bm25"]["reused_index"]
    # queries come from the cache, the model is not called again
    assert summary["tiny"]["cache"] == {"hits": len(rows), "misses": 0, "inner_calls": 0}

    table = embedarena("compare", str(out))
    assert table.code == 0, table.stderr
    assert "原数据" in table.stdout and "tiny" in table.stdout and "precise@5" in table.stdout


@pytest.mark.es
@pytest.mark.slow
def test_minilm_beats_chance_on_real_cranfield_subset(embedarena: Callable[..., CliResult],
                                                      es_prefix: str,
                                                      shared_data: Path, minilm_dir: Path,
                                                      tmp_path: Path) -> None:
    """End to end on real data and the real MiniLM: Cranfield's first 40 queries against the
    documents judged for them plus 200 others (written to tmp, never into the repo)."""
    from embedarena.data.datasets import load_dataset

    docs, sets = load_dataset("cranfield")
    qs = next(iter(sets.values())).queries[:40]
    judged = {g for q in qs for g in q.relevant}
    keep = [i for i, d in enumerate(docs.ids) if d in judged][:400]
    keep += [i for i, d in enumerate(docs.ids) if d not in judged][:200]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": docs.ids[i], "text": docs.texts[i]}) + "\n"
                              for i in keep), encoding="utf-8")
    kept = {docs.ids[i] for i in keep}
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(
        json.dumps({"query": q.text, "pos": [g for g in q.relevant if g in kept]}) + "\n"
        for q in qs), encoding="utf-8")

    out = tmp_path / "run"
    res = embedarena("eval", "--model", "minilm", "--model", "bm25", "--queries", str(queries),
                     "--corpus", str(corpus), "--k", "1,10", "--metrics", "ndcg@10",
                     "--out", str(out), "--prefix", es_prefix)
    assert res.code == 0, res.stderr
    m = {n: json.loads((out / n / "metrics.json").read_text())["metrics"]
         for n in ("minilm", "bm25")}
    # a random ranking of ~600 docs would almost never hit in the top 10
    assert m["minilm"]["hit@10"] > 0.8 and m["bm25"]["hit@10"] > 0.8
    assert m["minilm"]["ndcg@10"] > 0.3
