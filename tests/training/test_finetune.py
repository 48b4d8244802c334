"""`finetune:` experiment entries: parsed once, planned, mined, trained once, reused, keyed by
inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedarena.embedders.hf import HFSpec
from embedarena.errors import ConfigError
from embedarena.experiment import Experiment
from embedarena.experiment import parse_model_entry as parse
from embedarena.training.finetune import FinetuneSpec, plan_finetune
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


def _spec(entry: dict[str, object], base_dir: Path) -> FinetuneSpec:
    spec = parse(entry, context={"base_dir": base_dir})
    assert isinstance(spec, FinetuneSpec)
    return spec


def test_plan_validates_and_keys_by_inputs(tiny_encoder: Path, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", toy_rows(8))
    a = plan_finetune(_spec(_entry(tiny_encoder), tmp_path), tmp_path / "runs")
    assert a.out_dir.parent == tmp_path / "runs" / "finetune"
    assert a.key == plan_finetune(_spec(_entry(tiny_encoder), tmp_path), tmp_path / "runs").key
    assert a.key != plan_finetune(_spec(_entry(tiny_encoder, learning_rate=1e-4), tmp_path),
                                  tmp_path / "runs").key
    write_jsonl(tmp_path / "train.jsonl", toy_rows(9))  # new data → new model
    assert a.key != plan_finetune(_spec(_entry(tiny_encoder), tmp_path), tmp_path / "runs").key
    with pytest.raises(ConfigError, match="unknown finetune settings.*'epoch'"):
        _spec(_entry(tiny_encoder, epoch=2), tmp_path)
    with pytest.raises(ConfigError, match="only hf models|cannot be used here"):
        _spec({"name": "x", "finetune": {"base": "bm25", "train": "train.jsonl"}}, tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        _spec({"name": "x", "finetune": {"base": "minilm", "train": "nope.jsonl"}}, tmp_path)
    with pytest.raises(ConfigError, match="unknown settings \\['poolng'\\] beside finetune"):
        _spec({**_entry(tiny_encoder), "poolng": "cls"}, tmp_path)


def test_experiment_adds_the_base_then_materialize_trains_once(tiny_encoder: Path,
                                                               tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", toy_rows(8))
    exp = Experiment.model_validate({"name": "e", "models": ["bm25", _entry(tiny_encoder)]},
                                    context={"base_dir": tmp_path})
    assert exp.model_names == ["bm25", "tiny", "tiny-ft"]  # the base, to compare against
    assert exp.added == [("tiny", "base model", "tiny-ft")]
    ft = exp.model("tiny-ft")
    assert isinstance(ft, FinetuneSpec)
    notes: list[str] = []
    planned = ft.materialize(tmp_path / "runs", train=False)
    assert not Path(planned.path).exists()  # planned, not trained
    hf = ft.materialize(tmp_path / "runs", log=notes.append)
    assert isinstance(hf, HFSpec) and hf == planned
    assert hf.name == "tiny-ft" and hf.progress is False  # entry keys go to the hf model
    model_dir = Path(hf.path)
    assert (model_dir / "model.safetensors").is_file()
    assert (model_dir.parent / "train.mined.jsonl").is_file()
    assert any("mined" in n for n in notes) and any("training" in n for n in notes)
    stamp = (model_dir / "model.safetensors").stat().st_mtime_ns
    notes.clear()
    assert ft.materialize(tmp_path / "runs", log=notes.append) == hf
    assert any("reusing" in n for n in notes) and not any("training" in n for n in notes)
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == stamp
    from embedarena.embedders.registry import create_embedder

    vecs = create_embedder(hf).embed_documents(["what is 1 the"])
    assert vecs.shape == (1, 32)
