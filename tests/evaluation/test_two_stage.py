"""Two-stage rows on the real node: the retriever's top N reordered by the reranker (checked
against scoring the pairs independently), the retriever shown beside it, scores cached, the
report testing one against the other, and calibrate's dev search reproducing the row."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from embedarena.arena import run_experiment, search_like  # noqa: E402
from embedarena.embedders.reranker import HFReranker  # noqa: E402
from embedarena.evaluation.rows import TwoStageSpec  # noqa: E402
from embedarena.experiment import Experiment  # noqa: E402

LABELS = ["甲状腺结节", "甲状腺癌", "胆管炎", "胰腺囊肿", "宫颈上皮内瘤变", "子宫肌瘤", "高血压",
          "糖尿病", "肝硬化", "乳腺癌", "胆囊炎", "胰腺炎", "甲状腺功能亢进", "高血脂"]
QUERIES = [("脖子上的甲状腺结节", ["甲状腺结节"]), ("甲状腺癌的治疗", ["甲状腺癌"]),
           ("胆管炎发烧", ["胆管炎"]), ("血压高头晕", ["高血压"]), ("血糖高", ["糖尿病"]),
           ("胰腺发炎", ["胰腺炎"])]


@pytest.fixture
def experiment(es_node, es_prefix: str, tiny_reranker_dir: Path, tmp_path: Path,  # noqa: ANN001
               monkeypatch: pytest.MonkeyPatch) -> Experiment:
    for k, v in {**es_node.env, "EMBEDARENA_HOME": str(tmp_path / "home")}.items():
        monkeypatch.setenv(k, v)
    (tmp_path / "labels.json").write_text(json.dumps(LABELS, ensure_ascii=False), "utf-8")
    with (tmp_path / "q.jsonl").open("w", encoding="utf-8") as f:
        for q, pos in QUERIES:
            f.write(json.dumps({"query": q, "pos": pos}, ensure_ascii=False) + "\n")
    return Experiment.model_validate({
        "name": "two", "corpus": {"path": "labels.json"}, "queries": [{"path": "q.jsonl"}],
        "metrics": ["precise@1", "hit@3", "mrr@10"], "depth": 8,
        "index": {"prefix": es_prefix},
        "models": ["bm25",
                   {"name": "bm25+rr", "retriever": "bm25",
                    "reranker": {"path": str(tiny_reranker_dir), "normalize": "sigmoid"},
                    "top_n": 5},
                   {"name": "bigram+rr", "retriever": "bm25:bigram",
                    "reranker": str(tiny_reranker_dir), "top_n": 3}],
        "report": {"formats": ["md"], "resamples": 200},
        "out": str(tmp_path / "out")}, context={"base_dir": tmp_path})


@pytest.mark.es
def test_two_stage_rows(experiment: Experiment, tiny_reranker_dir: Path,
                        tmp_path: Path) -> None:
    assert experiment.model_names == ["bm25", "bm25+rr", "bm25-bigram", "bigram+rr"]
    assert experiment.added == [("bm25-bigram", "retriever", "bigram+rr")]
    two = experiment.model("bigram+rr")
    assert isinstance(two, TwoStageSpec) and two.retriever == "bm25-bigram"

    res = run_experiment(experiment)
    assert res.comparison.models == experiment.model_names
    assert res.builds["bm25+rr"].note and "bm25" in res.builds["bm25+rr"].note
    rr = HFReranker(tiny_reranker_dir)
    for name, retriever, n, sigmoid in (("bm25+rr", "bm25", 5, True),
                                        ("bigram+rr", "bm25-bigram", 3, False)):
        base, run = res.runs[(retriever, "q")], res.runs[(name, "q")]
        assert run.meta["retriever"] == retriever and run.meta["top_n"] == n
        for b, r in zip(base.results, run.results, strict=True):
            head = b.retrieved[:n]
            raw = rr.score_pairs([(b.query, d) for d in head])  # labels: the id is the text
            want = [head[i] for i in sorted(range(len(head)), key=lambda i: -raw[i])]
            assert r.retrieved[:len(head)] == want
            assert r.retrieved[len(head):] == b.retrieved[len(head):8]  # the tail keeps order
            shown = 1 / (1 + np.exp(-np.sort(raw)[::-1])) if sigmoid else np.sort(raw)[::-1]
            np.testing.assert_allclose(r.scores[:len(head)], shown, atol=1e-5)
            assert all(x > y for x, y in zip(r.scores, r.scores[1:]) if x != y) or \
                r.scores == sorted(r.scores, reverse=True)
    cache = res.stats["bm25+rr"]["rerank_cache"]
    assert cache["misses"] > 0
    md = (tmp_path / "out" / "report" / "report.md").read_text(encoding="utf-8")
    assert "## Rerankers against their retrievers" in md
    assert "| bm25+rr | bm25 |" in md and "| bigram+rr | bm25-bigram |" in md

    again = run_experiment(experiment, report=False)
    assert again.stats["bm25+rr"]["rerank_cache"]["inner_calls"] == 0  # every pair cached
    assert again.comparison.value("bm25+rr", "q", "mrr@10") == \
        res.comparison.value("bm25+rr", "q", "mrr@10")

    dev = tmp_path / "dev.jsonl"
    dev.write_text(json.dumps({"query": "甲状腺", "pos": ["甲状腺结节"]},
                              ensure_ascii=False) + "\n", encoding="utf-8")
    from embedarena.evaluation.run import Run

    where = res.run_dirs[("bm25+rr", "q")]
    assert where == tmp_path / "out" / "q" / "bm25-rr"  # the one slug rule
    saved = Run.load(where)
    dev_run = search_like(saved, dev, depth=8)
    assert dev_run.meta["search"] == "two_stage" and dev_run.meta["retriever"] == "bm25"
    assert len(dev_run.results) == 1 and dev_run.results[0].retrieved
