"""RerankerConfig: the shared settings base plus the cross-encoder's own; the generated
`train reranker` CLI takes our spellings, FlagEmbedding's and RAG-Retrieval's alike."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from embedarena.errors import ConfigError
from embedarena.training import reranker as training
from embedarena.training.embedder import TrainConfig
from embedarena.training.reranker import OWN_SETTINGS, RerankerConfig
from embedarena.training.trainer import (
    FIXED_TRAINER_ARGUMENTS,
    TASK_WORDED,
    TrainResult,
    TrainSettings,
    trainer_arguments,
)


def _cfg(**kw: Any) -> RerankerConfig:
    return RerankerConfig(**{"model": "m", "train": ["t.jsonl"], "output_dir": "out", **kw})


def test_both_trainers_share_one_declaration_of_the_machinery() -> None:
    """The Trainer settings are inherited; a task only re-words its inputs and batch items."""
    shared = TrainSettings.machinery_names()
    assert {"learning_rate", "fp16", "resume_from_checkpoint", "extend_vocab",
            "report_to", "device", "seed", "save_steps"} <= set(shared)
    for cls in (TrainConfig, RerankerConfig):
        assert issubclass(cls, TrainSettings)
        assert set(shared) <= set(cls.model_fields)
        redeclared = set(cls.__annotations__) & set(TrainSettings.model_fields)
        assert redeclared <= TASK_WORDED, (cls, redeclared - TASK_WORDED)
    assert RerankerConfig.setting_names()[:3] == ["model", "train", "output_dir"]


def test_every_setting_is_ours_or_mapped_to_the_trainer() -> None:
    mapped = set(trainer_arguments(_cfg(), cuda=False))
    names = set(RerankerConfig.setting_names())
    assert not mapped & OWN_SETTINGS
    assert mapped | OWN_SETTINGS == names, (names - mapped - OWN_SETTINGS,
                                            (mapped | OWN_SETTINGS) - names)


def test_trainer_arguments_exist_and_arrive() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import TrainingArguments

    accepted = {f.name for f in dataclasses.fields(TrainingArguments)}
    cfg = _cfg(learning_rate=6e-5, epochs=5, batch_size=2, gradient_accumulation_steps=4,
               dataloader_drop_last="True", save_on_epoch_end=1, report_to="none",
               device="cpu", warmup_ratio=0.1)
    keywords: dict[str, Any] = dict(FIXED_TRAINER_ARGUMENTS)
    for name, kw in trainer_arguments(cfg, cuda=False).items():
        assert not set(kw) - accepted, name
        keywords.update(kw)
    args = TrainingArguments(**keywords)
    assert (args.learning_rate, args.num_train_epochs, args.per_device_train_batch_size,
            args.gradient_accumulation_steps, args.dataloader_drop_last) == (6e-5, 5, 2, 4, True)
    assert args.save_strategy == "epoch" and args.get_warmup_steps(50) == 5


@pytest.mark.parametrize(("kw", "message"), [
    ({"num_labels": 2}, r"num_labels: .*one logit; 2 labels would make a classifier"),
    ({"label_map": "3=1,2=1.5"}, r"label_map: .*scores in 0\.\.1.*2=1\.5"),
    ({"label_map": "3:1"}, r"label_map: .*LABEL=SCORE, got '3:1'"),
    ({"loss": "listnet"}, r"loss: Input should be 'group', 'bce' or 'mse'"),
    ({"train_group_size": 1}, r"train_group_size: Input should be greater than or equal to 2"),
    ({"save_on_epoch_end": 1, "save_steps": 10}, "choose one of --save-steps and"),
    ({"fp16": True, "bf16": True}, "choose one of --fp16 and --bf16"),
    ({"max_lenn": 3}, r"max_lenn \(did you mean max_len\?\)"),
])
def test_bad_values_are_one_config_error(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _cfg(**kw)


def test_value_spellings_and_label_maps() -> None:
    assert _cfg(loss="classfication").loss == "bce"
    assert _cfg(loss="Classification").loss == "bce"
    assert _cfg(loss="regression").loss == "mse"
    assert _cfg(label_map={3: 1, 0: 0}).label_map == {"3": 1.0, "0": 0.0}  # YAML int keys
    assert _cfg().label_map == {"3": 1.0, "2": 0.75, "1": 0.5, "0": 0.25}


# -- the CLI, generated from the fields ----------------------------------------------------
@pytest.fixture()
def captured(monkeypatch: pytest.MonkeyPatch) -> list[RerankerConfig]:
    """Run `train reranker` without training: the parsed RerankerConfig is recorded."""
    seen: list[RerankerConfig] = []

    def fake(cfg: RerankerConfig, log: Any = None) -> TrainResult:
        seen.append(cfg)
        return TrainResult(Path(cfg.output_dir), 3, 0.5, [(3, 0.25)], None, 0, [], None)

    monkeypatch.setattr(training, "train_reranker", fake)
    return seen


def _invoke(*args: str) -> Any:
    from embedarena.cli import app

    return CliRunner().invoke(app, ["train", "reranker", *args], env={"COLUMNS": "200"})


def test_rag_retrieval_command_line_translates_one_to_one(captured: list[RerankerConfig],
                                                          tmp_path: Path) -> None:
    """Seed 001's train_reranker.sh arguments, as written there (--log_with wandb is our
    --report-to wandb; here `none`, since wandb is not installed)."""
    data = tmp_path / "t2rank_100.json"
    data.write_text("")
    rag = ["--model_name_or_path", "bce-reranker-base_v1", "--dataset", str(data),
           "--output_dir", "./output/t2ranking_100_example", "--loss_type", "classfication",
           "--batch_size", "32", "--lr", "5e-5", "--epochs", "2", "--num_labels", "1",
           "--log_with", "none", "--save_on_epoch_end", "1", "--warmup_proportion", "0.1",
           "--gradient_accumulation_steps", "1", "--max_len", "512"]
    ours = ["-m", "bce-reranker-base_v1", "-t", str(data), "-o",
            "./output/t2ranking_100_example", "--loss", "bce", "--batch-size", "32", "--lr",
            "5e-5", "--epochs", "2", "--report-to", "none", "--save-on-epoch-end", "1",
            "--warmup-ratio", "0.1", "--max-len", "512"]
    for args in (rag, ours):
        res = _invoke(*args)
        assert res.exit_code == 0, res.output
    a, b = captured
    assert a == b
    assert (a.loss, a.batch_size, a.learning_rate, a.epochs, a.num_labels, a.save_on_epoch_end,
            a.warmup_ratio, a.gradient_accumulation_steps, a.max_len, a.report_to) == (
        "bce", 32, 5e-5, 2.0, 1, 1, 0.1, 1, 512, ["none"])
    res = _invoke(*rag[:-2], "--loss_type", "regression", "--num_labels", "2")
    assert isinstance(res.exception, ConfigError) and "one logit" in str(res.exception)


def test_flagembedding_command_line_translates_one_to_one(captured: list[RerankerConfig],
                                                          tmp_path: Path) -> None:
    """Seed 003's `FlagEmbedding.reranker.run` arguments, as written there."""
    data = tmp_path / "toy_finetune_data.jsonl"
    data.write_text("")
    flag = ["--output_dir", "out", "--model_name_or_path", "BAAI/bge-reranker-base",
            "--train_data", str(data), "--learning_rate", "6e-5", "--fp16",
            "--num_train_epochs", "5", "--per_device_train_batch_size", "1",
            "--gradient_accumulation_steps", "4", "--dataloader_drop_last", "True",
            "--train_group_size", "16", "--max_len", "512", "--weight_decay", "0.01",
            "--logging_steps", "10"]
    ours = ["-o", "out", "-m", "BAAI/bge-reranker-base", "-t", str(data), "--lr", "6e-5",
            "--fp16", "--epochs", "5", "--batch-size", "1", "--gradient-accumulation-steps",
            "4", "--dataloader-drop-last", "true", "--train-group-size", "16", "--max-len",
            "512", "--weight-decay", "0.01", "--logging-steps", "10"]
    for args in (flag, ours):
        res = _invoke(*args)
        assert res.exit_code == 0, res.output
        assert "trained 3 steps, last logged loss 0.2500" in res.output
    a, b = captured
    assert a == b
    assert a == RerankerConfig(model="BAAI/bge-reranker-base", train=[str(data)],
                               output_dir="out", learning_rate=6e-5, fp16=True, epochs=5,
                               batch_size=1, gradient_accumulation_steps=4,
                               dataloader_drop_last=True, train_group_size=16, max_len=512,
                               weight_decay=0.01, logging_steps=10)
    assert a.loss == "group" and a.stop_on_collapse


def test_every_reranker_setting_reaches_its_setting(captured: list[RerankerConfig],
                                                    tmp_path: Path) -> None:
    train = tmp_path / "g.tsv"
    train.write_text("")
    ds = tmp_path / "ds.json"
    ds.write_text("{}")
    res = _invoke("-m", "minilm", "-t", str(train), "--train", str(train), "-o", "o",
                  "--loss", "mse", "--train-group-size", "4", "--max-len", "128",
                  "--label-map", "2=1,1=0.5,0=0", "--num-labels", "1",
                  "--no-stop-on-collapse", "--dataloader-drop-last", "False",
                  "--save-on-epoch-end", "0", "--learning-rate", "1e-5", "--epochs", "2",
                  "--max-steps", "7", "-b", "8", "--warmup-ratio", "0", "--weight-decay",
                  "0.1", "--bf16", "--gradient-checkpointing",
                  "--gradient-accumulation-steps", "2", "--deepspeed", str(ds),
                  "--save-steps", "5", "--save-total-limit", "1", "--resume", "ckpt",
                  "--seed", "3", "--logging-steps", "1", "--report-to", "tensorboard",
                  "--extend-vocab", "--vocab-min-count", "2", "--dataloader-num-workers", "1",
                  "--cpu", "--no-progress")
    assert res.exit_code == 0, res.output
    [cfg] = captured
    assert cfg.model_dump() == {
        "model": "minilm", "train": [str(train), str(train)], "output_dir": "o",
        "learning_rate": 1e-5, "epochs": 2.0, "max_steps": 7, "batch_size": 8,
        "warmup_ratio": 0.0, "weight_decay": 0.1, "fp16": False, "bf16": True,
        "gradient_checkpointing": True, "gradient_accumulation_steps": 2,
        "deepspeed": str(ds), "save_steps": 5, "save_total_limit": 1,
        "resume_from_checkpoint": "ckpt", "seed": 3, "logging_steps": 1,
        "report_to": ["tensorboard"], "extend_vocab": True, "vocab_min_count": 2,
        "dataloader_num_workers": 1, "device": "cpu", "progress": False, "loss": "mse",
        "train_group_size": 4, "max_len": 128, "label_map": {"2": 1.0, "1": 0.5, "0": 0.0},
        "num_labels": 1, "stop_on_collapse": False, "dataloader_drop_last": False,
        "save_on_epoch_end": 0}
    assert set(cfg.model_dump()) == set(RerankerConfig.setting_names())  # covers them all


def test_help_has_an_example_and_every_setting(tmp_path: Path) -> None:
    import typer

    from embedarena.cli import app

    res = _invoke("--help")
    assert res.exit_code == 0 and "Example:" in res.output
    assert "Trainer options (shared by every train command)" in res.output
    root: Any = typer.main.get_command(app)
    command = root.commands["train"].commands["reranker"]
    options = {p.name: p for p in command.params}
    for name, info in RerankerConfig.model_fields.items():
        assert options[name].help == info.description and info.description, name
    assert {"--loss", "--loss_type"} <= set(options["loss"].opts)
    assert {"--train_data", "--dataset"} <= set(options["train"].opts)
    assert "--warmup_proportion" in options["warmup_ratio"].opts
