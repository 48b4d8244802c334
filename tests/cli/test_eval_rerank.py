"""`embedarena eval-rerank` in process: an embedder and a reranker on the T2Ranking sample."""

from __future__ import annotations

import json
from pathlib import Path

SMALL = "rag-retrieval-t2rank/t2rank_100.small.jsonl"


def test_eval_rerank_embedder_and_reranker(cli, shared_data: Path, tiny_bert_dir: Path,  # noqa: ANN001
                                           tiny_reranker_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = cli("eval-rerank", shared_data / SMALL, "--model", f"hf:{tiny_bert_dir}",
            "--model", f"reranker:{tiny_reranker_dir}", "--split", "test_size=0.3,seed=1",
            "--out", out, env={"EMBEDARENA_HOME": str(tmp_path / "home")})
    assert p.code == 0, p.stderr
    for col in ("MAP", "MRR@10", "nDCG@10", "tied", "pos=neg"):
        assert col in p.stdout
    assert "split test_size=0.3,seed=1: 4 test, 7 train samples" in p.stderr
    assert (out / "train.jsonl").exists() and (out / "test.jsonl").exists()
    dirs = sorted(d.name for d in out.iterdir() if d.is_dir())
    assert len(dirs) == 2
    for d in dirs:
        obj = json.loads((out / d / "rerank.json").read_text(encoding="utf-8"))
        assert obj["n_samples"] == 4 and obj["n_evaluated"] == 4
        assert set(obj["metrics"]) == {"map", "mrr@10", "ndcg@10"}
        assert "samples_with_ties" in obj["ties"]
        assert len((out / d / "rerank.per_sample.jsonl").read_text().splitlines()) == 4
    # a second run is served from the embedding/score cache
    again = cli("eval-rerank", shared_data / SMALL, "--model", f"hf:{tiny_bert_dir}",
                "--split", "test_size=0.3,seed=1", "--out", tmp_path / "again",
                env={"EMBEDARENA_HOME": str(tmp_path / "home")})
    assert again.code == 0, again.stderr
    meta = json.loads((tmp_path / "again" / "meta.json").read_text(encoding="utf-8"))
    assert meta["cache"]["misses"] == 0 and meta["cache"]["hits"] > 0
    def row(out: str) -> str:
        return next(line for line in out.splitlines() if tiny_bert_dir.name in line)

    assert row(again.stdout) == row(p.stdout)  # same values from cached vectors


def test_eval_rerank_rejects_bm25_in_one_line(cli, shared_data: Path) -> None:  # noqa: ANN001
    p = cli("eval-rerank", shared_data / SMALL, "--model", "bm25")
    assert p.code != 0 and "cannot be used here" in p.stderr and "Traceback" not in p.stderr
