"""`tune-fusion` end to end on the real node (two lexical members: no torch), and `calibrate`
on saved runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedarena.evaluation.run import QueryResult, Run

LABELS = ["甲状腺结节", "甲状腺癌", "胆管炎", "胰腺囊肿", "宫颈上皮内瘤变", "子宫肌瘤", "高血压",
          "糖尿病", "肝硬化", "乳腺癌", "营业执照办理", "营业执照注销", "硬盘维修", "硬盘价格"]
QUESTIONS = ["我有{}能买保险吗", "{}怎么治疗", "得了{}还能工作吗"]


@pytest.mark.es
def test_tune_fusion_reports_dev_and_test_without_overlap(cli, es_node, es_prefix,  # noqa: ANN001
                                                          tmp_path: Path) -> None:
    pytest.importorskip("jieba")
    (tmp_path / "labels.json").write_text(json.dumps(LABELS, ensure_ascii=False), "utf-8")
    with (tmp_path / "q.jsonl").open("w", encoding="utf-8") as f:
        for lab in LABELS:
            for q in QUESTIONS[:2]:
                f.write(json.dumps({"query": q.format(lab), "pos": [lab]}, ensure_ascii=False)
                        + "\n")
    (tmp_path / "exp.yaml").write_text(f"""
name: tune-test
corpus: {{path: labels.json}}
queries: [{{path: q.jsonl, name: q}}]
metrics: [precise@1, mrr@5]
index: {{prefix: {es_prefix}}}
models:
  - bm25
  - bm25:jieba
  - {{name: hyb, hybrid: [bm25, bm25-jieba], fusion: rrf, k: 60}}
""", encoding="utf-8")
    res = cli("tune-fusion", tmp_path / "exp.yaml", "--objective", "mrr@5", "--step", "0.5",
              "--rrf-k", "1,60", "--out", tmp_path / "out", env=es_node.env)
    assert res.code == 0, res.stderr
    data = json.loads((tmp_path / "out" / "tune.json").read_text("utf-8"))
    dev, test = set(data["dev_qids"]), set(data["test_qids"])
    assert dev and test and not dev & test
    assert len(dev) + len(test) == len(LABELS) * 2
    splits = {(r["split"], r["system"]) for r in data["rows"]}
    for split in ("dev", "test"):
        assert {(split, "bm25"), (split, "bm25-jieba"), (split, "fused (given)"),
                (split, "fused (tuned)")} <= splits
    assert {r["n"] for r in data["rows"] if r["split"] == "test"} == {len(test)}
    assert data["best"]["fusion"] in ("rrf", "weighted")


def _runs(root: Path, prefix: str, seed: int) -> None:
    import random

    rnd = random.Random(seed)
    for model, scale in (("m1", 1.0), ("m2", 10.0)):
        results = []
        for i in range(40):
            nm = i % 3 == 0
            top = scale * (rnd.uniform(0, 0.3) if nm else rnd.uniform(0.7, 1))
            results.append(QueryResult(f"{i}", f"{prefix} {i}", {} if nm else {f"g{i}": 1.0},
                                       [f"g{i}", "x"], [top, top / 2]))
        Run(model, prefix, results).save(root / model)


def test_calibrate_fits_per_model_thresholds(cli, tmp_path: Path) -> None:  # noqa: ANN001
    _runs(tmp_path / "dev", "dev", 1)
    _runs(tmp_path / "test", "test", 2)
    res = cli("calibrate", tmp_path / "test", "--dev", tmp_path / "dev", "--k", "1")
    assert res.code == 0, res.stderr
    data = json.loads((tmp_path / "test" / "calibration.json").read_text("utf-8"))
    by = {m["model"]: m for m in data["models"]}
    # per-model scales: each threshold sits in its own model's gap
    assert 0.3 * 1 <= by["m1"]["threshold"] <= 0.7 * 1
    assert 0.3 * 10 <= by["m2"]["threshold"] <= 0.7 * 10
    for m in by.values():
        assert m["test"]["precision"] == 1.0 and m["test"]["recall"] == 1.0
        assert m["test_metrics"]["e2e@1"] == 1.0


def test_calibrate_refuses_dev_equal_to_test(cli, tmp_path: Path) -> None:  # noqa: ANN001
    _runs(tmp_path / "dev", "same", 1)
    res = cli("calibrate", tmp_path / "dev", "--dev", tmp_path / "dev")
    assert res.code != 0
    assert "both the dev and the test" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.es
def test_calibrate_searches_a_dev_query_file_with_the_runs_model(cli, es_node,  # noqa: ANN001
                                                                 es_prefix: str,
                                                                 tmp_path: Path) -> None:
    """--dev QUERIES: each test run's model (from its meta) searches the dev file; gold that is
    not in --corpus marks a no-match query."""
    from embedarena.data.types import Corpus, Query, QuerySet
    from embedarena.evaluation.rows import RowContext, create_row
    from embedarena.experiment import parse_model_entry
    from embedarena.indexer.build import IndexOptions
    from embedarena.indexer.es import Target

    (tmp_path / "labels.json").write_text(json.dumps(LABELS, ensure_ascii=False), "utf-8")
    client, target = es_node.client, Target([es_node.url], "basic", False)
    row = create_row(parse_model_entry("bm25"),
                     RowContext(client, target, IndexOptions(), prefix=es_prefix))
    corpus = Corpus.from_labels(LABELS)
    row.build(corpus)
    test_q = QuerySet("t", [Query(f"t{i}", f"{lab}怎么治疗", {lab: 1.0})
                            for i, lab in enumerate(LABELS[:6])]
                      + [Query("tn", "今天天气怎么样", {"天气": 1.0})])
    run = row.search(test_q, 5)
    run.save(tmp_path / "test" / "bm25")
    with (tmp_path / "dev.jsonl").open("w", encoding="utf-8") as f:
        for lab in LABELS[6:]:
            f.write(json.dumps({"query": f"得了{lab}还能工作吗", "pos": [lab]},
                               ensure_ascii=False) + "\n")
        for q in ("明天会下雨吗", "附近有什么好吃的"):
            f.write(json.dumps({"query": q, "pos": ["不在标签里"]}, ensure_ascii=False) + "\n")
    res = cli("calibrate", tmp_path / "test", "--dev", tmp_path / "dev.jsonl",
              "--corpus", tmp_path / "labels.json", "--k", "1", env=es_node.env)
    assert res.code == 0, res.stderr
    data = json.loads((tmp_path / "test" / "calibration.json").read_text("utf-8"))
    m = data["models"][0]
    assert m["model"] == "bm25" and m["dev_queries"] == len(LABELS) - 6 + 2
    assert m["dev"]["n_no_match"] == 2 and m["test"]["n_no_match"] == 1
