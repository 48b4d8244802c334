"""`embedarena run` with a `finetune:` entry, against the real node: mine → train → index →
eval, base added for comparison; a second run reuses the model and the indexes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.training.conftest import write_jsonl

LABELS = ["甲状腺结节", "甲状腺癌", "胆管炎", "胰腺囊肿", "宫颈上皮内瘤变", "子宫肌瘤", "高血压",
          "糖尿病", "肝硬化", "乳腺癌"]
ROWS: list[dict[str, object]] = [
    {"query": "脖子前面有个肿块，B超说是结节", "pos": ["甲状腺结节"]},
    {"query": "甲状腺结节穿刺结果是恶性", "pos": ["甲状腺结节"]},
    {"query": "甲状腺结节穿刺结果是恶性", "pos": ["甲状腺癌"]},  # same query, second label
    {"query": "右上腹痛发烧黄疸", "pos": ["胆管炎"]},
    {"query": "血糖高口渴多尿", "pos": ["糖尿病"]},
    {"query": "血压160/100头晕", "pos": ["高血压"]},
]


@pytest.mark.es
def test_run_mines_trains_indexes_and_compares(cli, es_node, es_prefix: str,  # noqa: ANN001
                                               tiny_encoder: Path, tmp_path: Path) -> None:
    env = {**es_node.env, "EMBEDARENA_HOME": str(tmp_path / "home")}
    (tmp_path / "label.json").write_text(json.dumps(LABELS, ensure_ascii=False),
                                         encoding="utf-8")
    write_jsonl(tmp_path / "train.jsonl", [{**r, "neg": []} for r in ROWS])
    write_jsonl(tmp_path / "test.jsonl", ROWS[:2])
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        "name: ft\n"
        "corpus: {path: label.json}\n"
        "queries: [{path: test.jsonl, name: held-out}]\n"
        "metrics: [precise@1, hit@5]\n"
        f"index: {{type: flat, prefix: {es_prefix}}}\n"
        "models:\n"
        "  - name: tiny-ft\n"
        "    finetune:\n"
        f"      base: {{name: tiny, type: hf, path: {tiny_encoder}}}\n"
        "      train: train.jsonl\n"
        "      mine: {range_for_sampling: 0-10, negative_number: 3, candidate_pool: label.json,"
        " backend: torch, use_gpu: false}\n"
        "      max_steps: 3\n      batch_size: 3\n      train_group_size: 2\n"
        "      report_to: none\n      device: cpu\n", encoding="utf-8")
    first = cli("run", exp, "--no-report", env=env)
    assert first.code == 0, first.stderr[-3000:]
    out = tmp_path / "runs" / "ft"
    summary = {m["model"]: m for m in json.loads((out / "experiment.json").read_text())["models"]}
    assert set(summary) == {"tiny", "tiny-ft"}, "the base model was added to compare"
    ft_dirs = list((out / "finetune").iterdir())
    assert len(ft_dirs) == 1 and (ft_dirs[0] / ".complete").is_file()
    mined = [json.loads(ln) for ln in
             (ft_dirs[0] / "train.mined.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(mined) == len(ROWS)
    both = {"甲状腺结节", "甲状腺癌"}
    assert all(not both & set(r["neg"]) for r in mined if r["query"] == ROWS[1]["query"])
    assert "tiny-ft" in first.stdout and "tiny" in first.stdout

    second = cli("run", exp, "--no-report", env=env)
    assert second.code == 0, second.stderr[-3000:]
    assert "reusing the fine-tuned model" in second.stderr
    summary = {m["model"]: m for m in json.loads((out / "experiment.json").read_text())["models"]}
    assert summary["tiny-ft"]["reused_index"] and summary["tiny"]["reused_index"]
