"""`embedarena run` with BM25 chains, a dense HNSW member and hybrid rows, on the real node:
hybrid rows appear, members are built even when only the hybrid is selected, and the dense
row carries its ANN check into the comparison table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

LABELS = ["甲状腺结节", "甲状腺癌", "胆管炎", "胰腺囊肿", "宫颈上皮内瘤变", "子宫肌瘤", "高血压",
          "糖尿病", "肝硬化", "乳腺癌", "胆囊炎", "胰腺炎"]


def _experiment(tmp_path: Path, prefix: str, model_dir: Path) -> Path:
    (tmp_path / "labels.json").write_text(json.dumps(LABELS, ensure_ascii=False), "utf-8")
    with (tmp_path / "q.jsonl").open("w", encoding="utf-8") as f:
        for lab in LABELS:
            f.write(json.dumps({"query": f"我有{lab}能买保险吗", "pos": [lab]},
                               ensure_ascii=False) + "\n")
    exp = tmp_path / "exp.yaml"
    exp.write_text(f"""
name: hyb-test
corpus: {{path: labels.json}}
queries: [{{path: q.jsonl, name: q}}]
metrics: [precise@1, mrr@5]
index: {{prefix: {prefix}, type: hnsw}}
cache: false
models:
  - bm25:jieba
  - {{name: tiny, type: hf, path: {model_dir}, device: cpu}}
  - {{name: hyb, hybrid: [bm25-jieba, tiny], fusion: weighted, weights: [0.7, 0.3]}}
""", encoding="utf-8")
    return exp


@pytest.mark.es
def test_run_with_hybrid_rows(cli, es_node, es_prefix, tmp_path: Path,  # noqa: ANN001
                              tiny_bert_dir: Path) -> None:
    pytest.importorskip("jieba")
    exp = _experiment(tmp_path, es_prefix, tiny_bert_dir)
    out = tmp_path / "out"
    res = cli("run", exp, "--out", out, "--no-report", env=es_node.env)
    assert res.code == 0, res.stderr
    md = (out / "comparison.md").read_text("utf-8")
    assert "| hyb |" in md and "| bm25-jieba |" in md and "ann@" in md
    meta = json.loads((out / "q" / "hyb" / "meta.json").read_text("utf-8"))
    assert meta["members"] == ["bm25-jieba", "tiny"] and meta["engine"] == "client"
    assert meta["fusion_params"] == {"fusion": "weighted", "normalize": "minmax",
                                     "weights": [0.7, 0.3]}
    dense = json.loads((out / "q" / "tiny" / "meta.json").read_text("utf-8"))
    assert 0 < dense["ann_check"]["overlap"] <= 1 and dense["ann_check"]["queries"] == 12

    # only the hybrid selected, members' indexes gone: they are built for it
    client = es_node.client
    for name in client.indices.get(index=f"{es_prefix}*"):
        client.indices.delete(index=name)
    out2 = tmp_path / "out2"
    res = cli("run", exp, "--out", out2, "--no-report", "-m", "hyb", env=es_node.env)
    assert res.code == 0, res.stderr
    assert (out2 / "q" / "hyb" / "run.jsonl").exists()
    assert not (out2 / "q" / "tiny").exists()  # members are searched, not reported as rows
