"""TrainConfig is the one declaration of the training settings: the CLI options, the
Trainer mapping and the allowed experiment keys all come from it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from embedarena.errors import ConfigError
from embedarena.training import embedder as training
from embedarena.training.embedder import (
    FIXED_TRAINER_ARGUMENTS,
    OWN_SETTINGS,
    TrainConfig,
    trainer_arguments,
)


def _cfg(**kw: Any) -> TrainConfig:
    return TrainConfig(**{"model": "m", "train": ["t.jsonl"], "output_dir": "out", **kw})


def test_unknown_settings_are_refused_with_the_allowed_names() -> None:
    with pytest.raises(ConfigError, match=r"unknown training settings: lrr; allowed: .*"
                                          r"learning_rate"):
        _cfg(lrr=1)
    with pytest.raises(ConfigError, match=r"epoch \(did you mean epochs\?\)"):
        _cfg(epoch=2)
    assert TrainConfig.setting_names()[:3] == ["model", "train", "output_dir"]
    assert "progress" in TrainConfig.setting_names()


@pytest.mark.parametrize(("kw", "message"), [
    ({"temperature": 0}, r"temperature: Input should be greater than 0 \(got 0\)"),
    ({"pooling": "max"}, r"pooling: .*'cls' or 'mean'"),
    ({"report_to": "tensorbord"}, r"report_to\.0: .*'tensorboard'"),
    ({"warmup_ratio": 1.5}, r"warmup_ratio: Input should be less than 1"),
    ({"epochs": "three"}, r"epochs: .*valid number"),
    ({"fp16": True, "bf16": True}, "choose one of --fp16 and --bf16"),
    ({"device": "cuda:1"}, r"device: Input should be 'cpu'"),
])
def test_bad_values_are_one_config_error(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _cfg(**kw)


def test_paths_and_comma_lists_are_accepted() -> None:
    cfg = TrainConfig(model=Path("m"), train=Path("t.jsonl"), output_dir=Path("o"),  # type: ignore[arg-type]
                      report_to="tensorboard, wandb")  # type: ignore[arg-type]
    assert (cfg.model, cfg.train, cfg.output_dir) == ("m", ["t.jsonl"], "o")
    assert cfg.report_to == ["tensorboard", "wandb"]
    with pytest.raises(ValueError):
        cfg.epochs = 3  # frozen: the checks made at construction stay true


def test_every_setting_is_ours_or_mapped_to_the_trainer() -> None:
    """A new setting must be consumed by our code or mapped to TrainingArguments."""
    mapped = set(trainer_arguments(_cfg(), cuda=False))
    names = set(TrainConfig.setting_names())
    assert not mapped & OWN_SETTINGS
    assert mapped | OWN_SETTINGS == names, (names - mapped - OWN_SETTINGS,
                                            (mapped | OWN_SETTINGS) - names)


def test_trainer_arguments_exist_and_arrive() -> None:
    """Every keyword we pass exists in the installed transformers and keeps its value."""
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers import TrainingArguments

    accepted = {f.name for f in dataclasses.fields(TrainingArguments)}
    cfg = _cfg(learning_rate=3e-5, epochs=2.5, batch_size=7, warmup_ratio=0.2,
               gradient_accumulation_steps=3, save_steps=5, save_total_limit=1, seed=9,
               logging_steps=2, report_to=["none"], dataloader_num_workers=1, device="cpu",
               gradient_checkpointing=True, max_steps=11, weight_decay=0.1)
    keywords: dict[str, Any] = dict(FIXED_TRAINER_ARGUMENTS)
    for name, kw in trainer_arguments(cfg, cuda=False).items():
        unknown = set(kw) - accepted
        assert not unknown, f"{name} maps to {unknown}, unknown to {transformers.__version__}"
        keywords.update(kw)
    assert set(FIXED_TRAINER_ARGUMENTS) <= accepted
    args = TrainingArguments(**keywords)
    assert (args.learning_rate, args.num_train_epochs, args.per_device_train_batch_size,
            args.gradient_accumulation_steps, args.save_steps, args.save_total_limit,
            args.seed, args.data_seed, args.logging_steps, args.max_steps,
            args.dataloader_num_workers, args.weight_decay) == (
        3e-5, 2.5, 7, 3, 5, 1, 9, 9, 2, 11, 1, 0.1)
    assert args.use_cpu and args.gradient_checkpointing and args.report_to == []
    assert args.save_strategy == "steps"
    assert args.get_warmup_steps(100) == 20  # the ratio really reaches the scheduler


# -- the CLI, generated from the fields ------------------------------------------------------
@pytest.fixture()
def captured(monkeypatch: pytest.MonkeyPatch) -> list[TrainConfig]:
    """Run `train embedder` without training: the parsed TrainConfig is recorded."""
    seen: list[TrainConfig] = []

    def fake(cfg: TrainConfig, log: Any = None) -> training.TrainResult:
        seen.append(cfg)
        return training.TrainResult(Path(cfg.output_dir), 3, 0.5, [(3, 0.25)], None, 0, [],
                                    None)

    monkeypatch.setattr(training, "train_embedder", fake)
    return seen


def _invoke(*args: str) -> Any:
    from embedarena.cli import app

    return CliRunner().invoke(app, ["train", "embedder", *args], env={"COLUMNS": "200"})


def test_cli_defaults_are_the_config_defaults(captured: list[TrainConfig],
                                              tmp_path: Path) -> None:
    train = tmp_path / "t.jsonl"
    train.write_text("")
    res = _invoke("-m", "minilm", "-t", str(train), "-o", str(tmp_path / "o"))
    assert res.exit_code == 0, res.output
    assert "trained 3 steps, last logged loss 0.2500" in res.output
    assert captured == [TrainConfig(model="minilm", train=[str(train)],
                                    output_dir=str(tmp_path / "o"))]


def test_every_spelling_reaches_its_setting(captured: list[TrainConfig],
                                            tmp_path: Path) -> None:
    train = tmp_path / "t.jsonl"
    train.write_text("")
    ds = tmp_path / "ds.json"
    ds.write_text("{}")
    readme = ["--model", "minilm", "--train", str(train), "--output", str(tmp_path / "a"),
              "--epochs", "3", "--batch-size", "32", "--train-group-size", "4", "--lr", "2e-5",
              "--temperature", "0.05", "--no-in-batch-negatives",
              "--no-cross-device-negatives", "--no-mask-false-negatives",
              "--query-instruction", "q: ", "--pooling", "mean", "--no-normalize",
              "--query-max-len", "16", "--passage-max-len", "32", "--warmup-ratio", "0.05",
              "--weight-decay", "0.0", "--bf16", "--gradient-checkpointing",
              "--gradient-accumulation-steps", "2", "--cache-chunk-size", "4",
              "--deepspeed", str(ds), "--save-steps", "10", "--save-total-limit", "3",
              "--resume", "ckpt", "--seed", "7", "--logging-steps", "5",
              "--report-to", "tensorboard,none", "--extend-vocab", "--vocab-min-count", "2",
              "--drop-dense", "--cpu", "--max-steps", "9", "--dataloader-num-workers", "1",
              "--no-progress"]
    flag_embedding = ["--model_name_or_path", "minilm", "--train_data", str(train),
                      "--output_dir", str(tmp_path / "a"), "--num_train_epochs", "3",
                      "--per_device_train_batch_size", "32", "--train_group_size", "4",
                      "--learning_rate", "2e-5", "--temperature", "0.05",
                      "--no_in_batch_negatives", "--no-cross-device-negatives",
                      "--no-mask-false-negatives",
                      "--query_instruction_for_retrieval", "q: ",
                      "--sentence_pooling_method", "mean", "--no-normalize",
                      "--query_max_len", "16", "--passage_max_len", "32",
                      "--warmup_ratio", "0.05", "--weight_decay", "0.0", "--bf16",
                      "--gradient_checkpointing", "--gradient_accumulation_steps", "2",
                      "--cache_chunk_size", "4", "--deepspeed", str(ds), "--save_steps", "10",
                      "--save_total_limit", "3", "--resume_from_checkpoint", "ckpt",
                      "--seed", "7", "--logging_steps", "5", "--report_to", "tensorboard",
                      "--report_to", "none", "--extend_vocab", "--vocab_min_count", "2",
                      "--drop_dense", "--cpu", "--max_steps", "9",
                      "--dataloader_num_workers", "1", "--no_progress"]
    for args in (readme, flag_embedding):
        res = _invoke(*args)
        assert res.exit_code == 0, res.output
    a, b = captured
    assert a == b
    assert a.model_dump() == {
        "model": "minilm", "train": [str(train)], "output_dir": str(tmp_path / "a"),
        "temperature": 0.05, "in_batch_negatives": False, "cross_device_negatives": False,
        "mask_false_negatives": False, "train_group_size": 4, "query_max_len": 16,
        "passage_max_len": 32, "query_instruction": "q: ", "pooling": "mean",
        "normalize": False, "learning_rate": 2e-5, "epochs": 3.0, "max_steps": 9,
        "batch_size": 32, "warmup_ratio": 0.05, "weight_decay": 0.0, "fp16": False,
        "bf16": True, "gradient_checkpointing": True, "gradient_accumulation_steps": 2,
        "cache_chunk_size": 4, "deepspeed": str(ds), "save_steps": 10, "save_total_limit": 3,
        "resume_from_checkpoint": "ckpt", "seed": 7, "logging_steps": 5,
        "report_to": ["tensorboard", "none"], "extend_vocab": True, "vocab_min_count": 2,
        "drop_dense": True, "dataloader_num_workers": 1, "device": "cpu", "progress": False}
    assert set(a.model_dump()) == set(TrainConfig.setting_names())  # the test covers them all


def test_cli_refuses_bad_values_in_one_line(captured: list[TrainConfig],
                                            tmp_path: Path) -> None:
    train = tmp_path / "t.jsonl"
    train.write_text("")
    base = ["-m", "minilm", "-t", str(train), "-o", str(tmp_path / "o")]
    res = _invoke(*base, "--pooling", "max")
    assert res.exit_code == 2 and "max" in res.output  # click's own choice check
    res = _invoke(*base, "--fp16", "--bf16")
    assert isinstance(res.exception, ConfigError)
    res = _invoke("-m", "minilm", "-t", str(tmp_path / "nope.jsonl"), "-o", "o")
    assert res.exit_code == 2 and "does not exist" in res.output
    assert not captured


def test_every_setting_has_a_documented_option() -> None:
    import typer

    from embedarena.cli import app

    root: Any = typer.main.get_command(app)  # a group (typer's own click flavour)
    command = root.commands["train"].commands["embedder"]
    options = {p.name: p for p in command.params}
    for name, info in TrainConfig.model_fields.items():
        assert name in options, name
        assert options[name].help == info.description and info.description, name
    assert "--lr" in options["learning_rate"].opts
    assert options["device"].opts == ["--cpu"]
