"""`finetune:` experiment entries: planned, mined, trained once, reused, keyed by inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedarena.errors import ConfigError
from embedarena.training.finetune import expand_finetune_entries, plan_finetune
from tests.training.conftest import toy_rows, write_jsonl

pytest.importorskip("torch")


def _entry(model: Path, **args: object) -> dict[str, object]:
    return {"name": "tiny-ft", "progress": False,
            "finetune": {"base": {"name": "tiny", "type": "hf", "path": str(model),
                                  "progress": False},
                         "train": "train.jsonl",
                         "mine": {"range_for_sampling": "0-20", "negative_number": 3,
                                  "backend": "torch", "use_gpu": False},
                         "max_steps": 2, "batch_size": 4, "train_group_size": 2,
                         "report_to": "none", "device": "cpu", **args}}


def test_plan_validates_and_keys_by_inputs(tiny_encoder: Path, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", toy_rows(8))
    a = plan_finetune(_entry(tiny_encoder), tmp_path, tmp_path / "runs")
    assert a.out_dir.parent == tmp_path / "runs" / "finetune"
    assert a.key == plan_finetune(_entry(tiny_encoder), tmp_path, tmp_path / "runs").key
    assert a.key != plan_finetune(_entry(tiny_encoder, learning_rate=1e-4), tmp_path,
                                  tmp_path / "runs").key
    write_jsonl(tmp_path / "train.jsonl", toy_rows(9))  # new data → new model
    assert a.key != plan_finetune(_entry(tiny_encoder), tmp_path, tmp_path / "runs").key
    with pytest.raises(ConfigError, match="unknown finetune settings.*'epoch'"):
        plan_finetune(_entry(tiny_encoder, epoch=2), tmp_path, tmp_path)
    with pytest.raises(ConfigError, match="only hf models"):
        plan_finetune({"name": "x", "finetune": {"base": "bm25", "train": "train.jsonl"}},
                      tmp_path, tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        plan_finetune({"name": "x", "finetune": {"base": "minilm", "train": "nope.jsonl"}},
                      tmp_path, tmp_path)


def test_expand_trains_once_then_reuses(tiny_encoder: Path, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", toy_rows(8))
    notes: list[str] = []
    models = expand_finetune_entries(["bm25", _entry(tiny_encoder)], tmp_path,
                                     tmp_path / "runs", log=notes.append)
    assert models[0] == "bm25"
    assert models[1]["name"] == "tiny"  # the base was added to compare against
    ft = models[2]
    assert ft["name"] == "tiny-ft" and ft["type"] == "hf" and ft["progress"] is False
    model_dir = Path(ft["path"])
    assert (model_dir / "model.safetensors").is_file()
    assert (model_dir.parent / "train.mined.jsonl").is_file()
    assert any("mined" in n for n in notes) and any("training" in n for n in notes)
    stamp = (model_dir / "model.safetensors").stat().st_mtime_ns
    notes.clear()
    again = expand_finetune_entries(["bm25", _entry(tiny_encoder)], tmp_path,
                                    tmp_path / "runs", log=notes.append)
    assert again == models
    assert any("reusing" in n for n in notes) and not any("training" in n for n in notes)
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == stamp
    from embedarena.embedders.base import create_embedder

    vecs = create_embedder(ft).embed_documents(["what is 1 the"])
    assert vecs.shape == (1, 32)
