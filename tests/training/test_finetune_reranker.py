"""`finetune: {kind: reranker}` in an experiment, on the real node: mined with the two-stage
row's retriever, trained once, reused, and scored by the reranker adapter exactly as a plain
transformers forward pass of the trained model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from embedarena.arena import run_experiment  # noqa: E402
from embedarena.embedders.reranker import HFReranker, RerankerSpec  # noqa: E402
from embedarena.errors import ConfigError  # noqa: E402
from embedarena.evaluation.rows import TwoStageSpec  # noqa: E402
from embedarena.experiment import Experiment  # noqa: E402
from embedarena.progress import RecordingProgress  # noqa: E402
from embedarena.training.finetune import FinetuneSpec  # noqa: E402
from tests.training.conftest import write_jsonl  # noqa: E402

LABELS = ["甲状腺结节", "甲状腺癌", "胆管炎", "胰腺囊肿", "宫颈上皮内瘤变", "子宫肌瘤", "高血压",
          "糖尿病", "肝硬化", "乳腺癌"]
ROWS: list[dict[str, object]] = [
    {"query": "脖子前面有个结节", "pos": ["甲状腺结节"]},
    {"query": "甲状腺结节穿刺是癌", "pos": ["甲状腺癌"]},
    {"query": "右上腹痛发烧胆管", "pos": ["胆管炎"]},
    {"query": "血糖高口渴多尿糖尿", "pos": ["糖尿病"]},
    {"query": "血压160/100头晕高血压", "pos": ["高血压"]},
    {"query": "肝区不适肝硬化", "pos": ["肝硬化"]},
]


def _raw(tmp_path: Path, base: Path, es_prefix: str) -> dict[str, object]:
    (tmp_path / "labels.json").write_text(json.dumps(LABELS, ensure_ascii=False), "utf-8")
    write_jsonl(tmp_path / "train.jsonl", [{**r, "neg": []} for r in ROWS])
    write_jsonl(tmp_path / "test.jsonl", ROWS[:3])
    return {"name": "rrft", "corpus": {"path": "labels.json"},
            "queries": [{"path": "test.jsonl", "name": "held-out"}],
            "metrics": ["precise@1", "mrr@5"], "index": {"prefix": es_prefix},
            "models": ["bm25", {
                "name": "bm25+ft", "retriever": "bm25", "top_n": 5, "normalize": "sigmoid",
                "finetune": {"kind": "reranker", "base": str(base), "train": "train.jsonl",
                             "mine": {"range_for_sampling": "0-10", "negative_number": 3},
                             "loss": "group", "train_group_size": 2, "max_steps": 3,
                             "batch_size": 2, "max_len": 64, "report_to": "none",
                             "device": "cpu", "stop_on_collapse": False}}]}


def test_flat_entry_is_a_two_stage_row_with_a_trained_reranker(tmp_path: Path,
                                                                tiny_encoder: Path) -> None:
    exp = Experiment.model_validate(_raw(tmp_path, tiny_encoder, "x-"),
                                    context={"base_dir": tmp_path})
    assert exp.model_names == ["bm25", "bm25+ft"]  # no base entry: it is not a retriever
    row = exp.model("bm25+ft")
    assert isinstance(row, TwoStageSpec) and row.retriever == "bm25" and row.top_n == 5
    ft = row.reranker
    assert isinstance(ft, FinetuneSpec) and ft.finetune.kind == "reranker"
    assert ft.model_settings == {"normalize": "sigmoid"}
    bad = _raw(tmp_path, tiny_encoder, "x-")
    bad["models"][1]["finetune"]["train_group_sise"] = 2  # type: ignore[index]
    with pytest.raises(ConfigError, match="unknown finetune settings.*train_group_sise"):
        Experiment.model_validate(bad, context={"base_dir": tmp_path})
    no_retriever = _raw(tmp_path, tiny_encoder, "x-")
    del no_retriever["models"][1]["retriever"]  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="needs `retriever:`"):
        Experiment.model_validate(no_retriever, context={"base_dir": tmp_path})


@pytest.mark.es
def test_mine_train_rerank_then_reuse(es_node, es_prefix: str, tmp_path: Path,  # noqa: ANN001
                                      tiny_encoder: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in {**es_node.env, "EMBEDARENA_HOME": str(tmp_path / "home")}.items():
        monkeypatch.setenv(k, v)
    exp = Experiment.model_validate(_raw(tmp_path, tiny_encoder, es_prefix),
                                    context={"base_dir": tmp_path})
    progress = RecordingProgress()
    res = run_experiment(exp, progress=progress)
    notes = [n for _, n in progress.notes]
    assert any("mining hard negatives" in n and "with bm25" in n for n in notes)
    assert res.comparison.models == ["bm25", "bm25+ft"]
    run = res.runs[("bm25+ft", "held-out")]
    assert run.meta["retriever"] == "bm25" and run.meta["reranker"]["normalize"] == "sigmoid"
    ft_dirs = list((tmp_path / "runs" / "rrft" / "finetune").iterdir())
    assert len(ft_dirs) == 1 and (ft_dirs[0] / ".complete").is_file()
    mined = [json.loads(ln) for ln in
             (ft_dirs[0] / "train.mined.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(mined) == len(ROWS) and all(set(r["neg"]) <= set(LABELS) for r in mined)
    model_dir = ft_dirs[0] / "model"

    # the trained model through the adapter = a plain transformers forward pass
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    pairs = [("脖子前面有个结节", "甲状腺结节"), ("血压高", "高血压"), ("血压高", "胆管炎")]
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        enc = tok([q for q, _ in pairs], [d for _, d in pairs], padding=True,
                  truncation=True, return_tensors="pt")
        want = model(**enc).logits.view(-1).numpy()
    rr = HFReranker(model_dir)
    np.testing.assert_allclose(rr.score_pairs(pairs), want, atol=1e-5)
    assert RerankerSpec.model_validate({"path": str(model_dir)}).name == "model"

    progress = RecordingProgress()
    again = run_experiment(exp, progress=progress)
    assert any("reusing the fine-tuned model" in n for _, n in progress.notes)
    assert again.comparison.value("bm25+ft", "held-out", "mrr@5") == \
        res.comparison.value("bm25+ft", "held-out", "mrr@5")
