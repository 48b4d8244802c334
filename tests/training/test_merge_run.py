"""A `merge:` entry in an experiment, in process against the real node: the base, its
fine-tune and their merge are built and scored side by side; a second run reuses the merged
model and every index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import embedarena as ea
from embedarena.progress import RecordingProgress
from tests.training.conftest import write_jsonl

LABELS = ["甲状腺结节", "甲状腺癌", "胆管炎", "胰腺囊肿", "高血压", "糖尿病", "肝硬化", "乳腺癌"]
ROWS: list[dict[str, object]] = [
    {"query": "脖子前面有个肿块，B超说是结节", "pos": ["甲状腺结节"], "neg": []},
    {"query": "甲状腺结节穿刺结果是恶性", "pos": ["甲状腺癌"], "neg": []},
    {"query": "右上腹痛发烧黄疸", "pos": ["胆管炎"], "neg": []},
    {"query": "血糖高口渴多尿", "pos": ["糖尿病"], "neg": []},
    {"query": "血压160/100头晕", "pos": ["高血压"], "neg": []},
]


@pytest.mark.es
def test_experiment_builds_base_fine_tune_and_merge_then_reuses(
        es_node, es_prefix: str, tiny_encoder: Path, tmp_path: Path,  # noqa: ANN001
        monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in es_node.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("EMBEDARENA_HOME", str(tmp_path / "home"))
    (tmp_path / "label.json").write_text(json.dumps(LABELS, ensure_ascii=False),
                                         encoding="utf-8")
    write_jsonl(tmp_path / "train.jsonl", ROWS)
    write_jsonl(tmp_path / "test.jsonl", ROWS[:3])
    exp = ea.Experiment.model_validate({
        "name": "merge", "corpus": {"path": "label.json"},
        "queries": [{"path": "test.jsonl", "name": "held-out"}],
        "metrics": ["precise@1", "hit@5"], "index": {"type": "flat", "prefix": es_prefix},
        "models": [
            {"name": "tiny", "type": "hf", "path": str(tiny_encoder), "device": "cpu"},
            {"name": "tiny-ft", "device": "cpu", "finetune": {
                "base": {"name": "tiny", "type": "hf", "path": str(tiny_encoder)},
                "train": "train.jsonl", "max_steps": 2, "batch_size": 3,
                "train_group_size": 2, "report_to": "none", "device": "cpu"}},
            {"name": "mix", "device": "cpu",
             "merge": {"models": ["tiny", "tiny-ft"], "weights": [0.5, 0.5]}},
        ]}, context={"base_dir": tmp_path})
    progress = RecordingProgress()
    first = ea.run_experiment(exp, progress=progress)
    assert first.rows == ["tiny", "tiny-ft", "mix"]
    assert set(first.built) == {"tiny", "tiny-ft", "mix"} and first.reused == []
    assert first.comparison.models == ["tiny", "tiny-ft", "mix"]
    rows = [ln.split(" | ")[0].removeprefix("| ") for ln in
            first.comparison.to_markdown().splitlines() if ln.startswith("| ")][1:]
    assert rows == ["tiny", "tiny-ft", "mix"], "the table shows base, fine-tune, merge"
    plans = list((tmp_path / "runs" / "merge" / "merge").iterdir())
    assert len(plans) == 1 and (plans[0] / ".complete").is_file()
    model = plans[0] / "model"
    meta = json.loads((model / "embedarena_merge.json").read_text(encoding="utf-8"))
    assert [m["model"] for m in meta["models"]] == ["tiny", "tiny-ft"]
    settings = json.loads((tmp_path / "runs" / "merge" / "held-out" / "mix" / "meta.json"
                           ).read_text(encoding="utf-8"))["model_settings"]
    assert settings["path"] == str(model) and settings["type"] == "hf"
    stamp = (model / "model.safetensors").stat().st_mtime_ns

    progress = RecordingProgress()
    again = ea.run_experiment(exp, progress=progress)
    assert set(again.reused) == {"tiny", "tiny-ft", "mix"} and again.built == []
    assert any("reusing the merged model" in n for _, n in progress.notes), progress.notes
    assert (model / "model.safetensors").stat().st_mtime_ns == stamp
    for name in ("tiny", "tiny-ft", "mix"):
        assert again.comparison.value(name, "held-out", "hit@5") == \
            first.comparison.value(name, "held-out", "hit@5")
