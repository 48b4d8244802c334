"""The training machinery every `train` command shares, so no task grows a second loop.

One settings base (`TrainSettings`: the Trainer-bound settings, declared once), one mapping of
those settings to Hugging Face `TrainingArguments`, one `Trainer` subclass (our own loss, extra
files in every checkpoint), one progress task, one vocabulary check, one save/resume path.
A task (`embedder`, `reranker`) adds only what is its own: its settings, data, loss and the
files its output dir needs besides the weights. fp16/bf16, gradient accumulation and
checkpointing, DeepSpeed, torchrun/accelerate, TensorBoard, `--resume` and the progress bar
therefore behave the same for every model we train, and a fix to one reaches all.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    field_validator,
    model_validator,
)

from embedarena import progress
from embedarena.errors import ConfigError, EmbedderError, MissingExtraError

#: Written into every output dir (and checkpoint) so a model says how it was made.
TRAINING_META = "embedarena_training.json"


class Flags:
    """Extra command-line spellings of a setting, declared with it (the CLI adds
    `--dash-name` itself and reads `_` as `-`), so FlagEmbedding / RAG-Retrieval scripts
    translate one to one.

    `switch`: a bare flag that sets this value (`--cpu` sets device "cpu").
    `existing_file`: the value (each item of a list) names a file that must exist.
    `values`: other spellings of the setting's values (`classfication` -> `bce`); the
    settings model translates them, so the CLI passes the text through.
    `valued`: a boolean written with a value, HF-style (`--dataloader_drop_last True`).
    """

    __slots__ = ("names", "switch", "existing_file", "values", "valued")

    def __init__(self, *names: str, switch: str | None = None, existing_file: bool = False,
                 values: Mapping[str, str] | None = None, valued: bool = False) -> None:
        self.names = names
        self.switch = switch
        self.existing_file = existing_file
        self.values = dict(values or {})
        self.valued = valued


def flags_of(info: Any) -> Flags:
    """The `Flags` declared on a pydantic field (an empty one when none)."""
    return next((m for m in info.metadata if isinstance(m, Flags)), Flags())


ReportTo = Literal["tensorboard", "wandb", "none"]
#: The inputs every task declares first.
INPUT_SETTINGS = ("model", "train", "output_dir")
#: Shared settings a task may re-declare to say what they mean for it (help text, spellings).
TASK_WORDED = frozenset({"model", "train", "batch_size"})


class TrainSettings(BaseModel):
    """The settings every `train` command has: inputs, then the Trainer machinery.

    A task subclasses this and adds its own fields; the CLI is generated from the fields and
    an experiment's `finetune:` block sets them by name, so the two cannot drift apart. A
    task re-declares only what reads differently for it (`TASK_WORDED`: its inputs, and what
    one batch item is), which keeps the field's place and its meaning for the Trainer.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Annotated[str, Flags("-m", "--model_name_or_path")] = Field(
        description="Base model: a local HF/sentence-transformers dir, or `minilm`.")
    train: Annotated[list[str], Flags("-t", "--train_data", existing_file=True)] = Field(
        min_length=1, description="Train JSONL {query, pos, neg}. Repeatable.")
    output_dir: Annotated[str, Flags("--output", "-o")] = Field(
        description="Output model dir.")
    learning_rate: Annotated[float, Flags("--lr")] = Field(
        default=2e-5, gt=0, description="Learning rate.")
    epochs: Annotated[float, Flags("--num_train_epochs")] = Field(
        default=1.0, gt=0, description="Epochs.")
    max_steps: int = Field(
        default=-1, ge=-1, description="Stop after this many optimizer steps (-1: by epochs).")
    batch_size: Annotated[int, Flags("-b", "--per_device_train_batch_size")] = Field(
        default=16, ge=1, description="Queries per device per step.")
    warmup_ratio: Annotated[float, Flags("--warmup_proportion")] = Field(
        default=0.1, ge=0, lt=1, description="Warm-up share of the steps.")
    weight_decay: float = Field(default=0.01, ge=0, description="AdamW weight decay.")
    fp16: bool = Field(default=False, description="Mixed precision fp16 (GPU).")
    bf16: bool = Field(default=False, description="Mixed precision bf16 (Ampere+ GPU).")
    gradient_checkpointing: bool = Field(
        default=False,
        description="Recompute activations in the backward pass: less memory, slower steps.")
    gradient_accumulation_steps: int = Field(
        default=1, ge=1, description="Accumulate gradients over this many steps.")
    deepspeed: Annotated[str | None, Flags(existing_file=True)] = Field(
        default=None, description="DeepSpeed config JSON (passed to the Trainer).")
    save_steps: int | None = Field(
        default=None, ge=1, description="Checkpoint every N steps.")
    save_total_limit: int | None = Field(
        default=2, ge=1, description="Keep at most N checkpoints.")
    resume_from_checkpoint: Annotated[str | None, Flags("--resume")] = Field(
        default=None, description="A checkpoint dir to continue from.")
    seed: int = Field(
        default=42, description="Seed (data order, sampling, init of new tokens).")
    logging_steps: int = Field(default=10, ge=1, description="Log the loss every N steps.")
    report_to: Annotated[list[ReportTo], Flags("--log_with")] = Field(
        default_factory=lambda: list[ReportTo](["tensorboard"]),
        description="tensorboard | wandb | none (comma-separated or repeated).")
    extend_vocab: bool = Field(
        default=False,
        description="Add characters/words the tokenizer maps to [UNK] as new tokens.")
    vocab_min_count: int = Field(
        default=1, ge=1,
        description="With --extend-vocab: add pieces seen at least this often.")
    dataloader_num_workers: int = Field(
        default=0, ge=0, description="Data loader worker processes.")
    device: Annotated[Literal["cpu"] | None, Flags("--cpu", switch="cpu")] = Field(
        default=None, description="Train on the CPU even with a GPU.")
    progress: bool = Field(
        default=True, description="Report progress (the loss in the task line).")

    @classmethod
    def setting_names(cls) -> list[str]:
        """Every settable name, in declaration order (experiment files validate against it)."""
        return list(cls.model_fields)

    @classmethod
    def machinery_names(cls) -> list[str]:
        """The shared Trainer settings (every field of this base but the inputs): the CLI
        shows them in a panel of their own, below the task's settings."""
        return [n for n in TrainSettings.model_fields if n not in INPUT_SETTINGS]

    def task_trainer_arguments(self, cuda: bool) -> dict[str, dict[str, Any]]:
        """`TrainingArguments` keywords of the task's own Trainer-bound settings (none here);
        they are applied after the shared ones, so a task may refine them."""
        return {}

    @model_validator(mode="wrap")
    @classmethod
    def _as_config_error(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        """Unknown names and bad values become one `ConfigError` naming the setting, so a
        typo in an experiment file or script is refused instead of silently ignored; other
        tools' spellings of a value (`Flags.values`) are translated first."""
        if isinstance(data, dict):
            names = cls.setting_names()
            unknown = sorted(set(data) - set(names))
            if unknown:
                hints = [f"{u} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(
                    u, names, n=1)) else u for u in unknown]
                raise ConfigError(f"unknown training settings: {', '.join(hints)}; allowed: "
                                  f"{', '.join(sorted(names))}")
            data = dict(data)
            for name, info in cls.model_fields.items():
                spellings = flags_of(info).values
                value = data.get(name)
                if spellings and isinstance(value, str):
                    data[name] = spellings.get(value.strip().lower(), value.strip())
        try:
            return handler(data)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(x) for x in err['loc']) or 'settings'}: {err['msg']}"
                + ("" if err["type"] == "missing" else f" (got {err.get('input')!r})")
                for err in e.errors())
            raise ConfigError(f"training settings: {problems}") from None

    @field_validator("model", "output_dir", "deepspeed", "resume_from_checkpoint",
                     mode="before")
    @classmethod
    def _path_as_str(cls, v: Any) -> Any:
        return os.fspath(v) if isinstance(v, os.PathLike) else v

    @field_validator("train", mode="before")
    @classmethod
    def _train_list(cls, v: Any) -> Any:
        """One file or several; `Path`s welcome."""
        items = [v] if isinstance(v, (str, os.PathLike)) else v
        if not isinstance(items, (list, tuple)):
            return v
        return [os.fspath(p) if isinstance(p, os.PathLike) else p for p in items]

    @field_validator("report_to", mode="before")
    @classmethod
    def _split_report_to(cls, v: Any) -> Any:
        """`"tensorboard,wandb"` (CLI, YAML) or a list of names."""
        if not isinstance(v, (str, list, tuple)):
            return v
        out: list[Any] = []
        for item in [v] if isinstance(v, str) else v:
            if isinstance(item, str):
                out.extend(r.strip() for r in item.split(",") if r.strip())
            else:
                out.append(item)
        return out

    @model_validator(mode="after")
    def _consistent(self) -> Any:
        if self.fp16 and self.bf16:
            raise ConfigError("choose one of --fp16 and --bf16")
        return self


#: Shared settings our own code consumes (model, data, resume point, vocabulary, progress);
#: every other shared setting has an entry in `trainer_arguments`.
SHARED_OWN_SETTINGS = frozenset({
    "model", "train", "resume_from_checkpoint", "extend_vocab", "vocab_min_count", "progress",
})
#: `TrainingArguments` our loop needs whatever the settings: batches are dicts of our own,
#: the loss is ours (no label columns), progress goes through `embedarena.progress`, and
#: every trainable parameter is used (the embedder freezes BERT's pooler).
FIXED_TRAINER_ARGUMENTS: dict[str, Any] = {
    "remove_unused_columns": False, "label_names": [], "disable_tqdm": True,
    "ddp_find_unused_parameters": False,
}


def trainer_arguments(cfg: TrainSettings, cuda: bool) -> dict[str, dict[str, Any]]:
    """Each Trainer-bound setting -> the `TrainingArguments` keywords it becomes
    (transformers 5 names), the task's own last. Explicit rather than filtered against the
    installed signature: a renamed argument then fails in a test instead of being dropped
    without a word."""
    report_to = [r for r in cfg.report_to if r != "none"]
    shared: dict[str, dict[str, Any]] = {
        "output_dir": {"output_dir": cfg.output_dir},
        "learning_rate": {"learning_rate": cfg.learning_rate},
        "epochs": {"num_train_epochs": cfg.epochs},
        "max_steps": {"max_steps": cfg.max_steps},
        "batch_size": {"per_device_train_batch_size": cfg.batch_size},
        # transformers 5 dropped warmup_ratio: a warmup_steps float below 1 is the ratio.
        "warmup_ratio": {"warmup_steps": cfg.warmup_ratio},
        "weight_decay": {"weight_decay": cfg.weight_decay},
        "fp16": {"fp16": cfg.fp16},
        "bf16": {"bf16": cfg.bf16},
        "gradient_checkpointing": {"gradient_checkpointing": cfg.gradient_checkpointing,
                                   "gradient_checkpointing_kwargs": {"use_reentrant": False}
                                   if cfg.gradient_checkpointing else None},
        "gradient_accumulation_steps": {
            "gradient_accumulation_steps": cfg.gradient_accumulation_steps},
        "deepspeed": {"deepspeed": cfg.deepspeed},
        "save_steps": {"save_strategy": "steps" if cfg.save_steps else "no",
                       "save_steps": cfg.save_steps or 500},
        "save_total_limit": {"save_total_limit": cfg.save_total_limit},
        "seed": {"seed": cfg.seed, "data_seed": cfg.seed},
        "logging_steps": {"logging_steps": cfg.logging_steps},
        "report_to": {"report_to": report_to or "none"},
        "dataloader_num_workers": {"dataloader_num_workers": cfg.dataloader_num_workers},
        "device": {"use_cpu": cfg.device == "cpu",
                   "dataloader_pin_memory": cuda and cfg.device != "cpu"},
    }
    return {**shared, **cfg.task_trainer_arguments(cuda)}


@dataclass
class TrainResult:
    output_dir: Path
    global_step: int
    train_loss: float | None
    losses: list[tuple[int, float]]
    vocab_before: dict[str, Any] | None
    vocab_added: int
    group_stats: list[str]
    resumed_from: str | None
    #: Training-health warnings (a collapsed run); empty when healthy.
    health: list[str] = field(default_factory=list)


# -- the steps every task runs --------------------------------------------------------------
def require_training_stack(cfg: TrainSettings) -> None:
    """Fail early, with the install command, when torch/transformers (5+)/wandb are missing."""
    import importlib.util

    if "wandb" in cfg.report_to and importlib.util.find_spec("wandb") is None:
        raise ConfigError("--report-to wandb needs the wandb package (pip install "
                          "wandb); TensorBoard logging needs nothing extra")
    try:
        import torch  # noqa: F401
        import transformers
    except ImportError as e:
        raise MissingExtraError(e.name or "transformers", "train") from None
    if int(transformers.__version__.split(".")[0]) < 5:
        raise ConfigError(f"training needs transformers 5 or newer (found "
                          f"{transformers.__version__}): pip install -U 'transformers>=5'")
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # our progress task is the only one


def world_rank() -> tuple[int, int]:
    """(processes, this process's rank) under torchrun/accelerate; (1, 0) alone."""
    return int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))


Say = Callable[..., None]


def notifier(log: Callable[[str], None] | None, reporter: progress.Progress) -> Say:
    """`say(msg, level="info")`: a note for the user from the main process only, to `log`
    when the caller gave one, else to the current `embedarena.progress`."""
    rank = world_rank()[1]

    def say(msg: str, level: progress.Level = "info") -> None:
        if rank != 0:
            return
        if log is not None:
            log(f"warning: {msg}" if level == "warning" else msg)
        else:
            reporter.note(msg, level=level)

    return say


@dataclass
class VocabStep:
    tokenizer: Any
    before: dict[str, Any]
    added: int
    #: Share of the training tokens the tokenizer maps to [UNK] before any extension.
    unknown_share: float


def check_vocab(model: Any, tok: Any, texts: list[str], cfg: TrainSettings,
                say: Say) -> VocabStep:
    """Measure how much of the training text is [UNK] to the tokenizer and warn when the
    model is blind to it; `--extend-vocab` adds the missing pieces. On resume the
    checkpoint's tokenizer (maybe extended before) is the one to use."""
    from transformers import AutoTokenizer

    from embedarena.training.vocab import extend_vocab, new_tokens_for, vocab_report

    report = vocab_report(tok, texts)
    before = {"tokens": report.tokens, "unknown": report.unknown,
              "share": round(report.share, 4)}
    say("vocabulary: " + report.summary())
    added = 0
    resuming = cfg.resume_from_checkpoint is not None
    if report.blind and not cfg.extend_vocab and not resuming:
        say(f"{report.share:.0%} of the training text is unknown to this model's tokenizer, "
            "so it cannot tell those texts apart; pass --extend-vocab to add the missing "
            "characters/words as new tokens, or pick a model for this language", "warning")
    if cfg.extend_vocab and not resuming:
        new = new_tokens_for(report, min_count=cfg.vocab_min_count)
        res = extend_vocab(model, tok, new, seed=cfg.seed)
        added = len(res.added)
        after = vocab_report(tok, texts)
        say(f"extended the vocabulary by {added} tokens ({res.from_subwords} initialised "
            f"from their subwords, {res.from_mean} from the embedding mean); unknown now "
            f"{after.share:.1%}")
    elif resuming:
        ckpt = Path(cfg.resume_from_checkpoint or "")
        if (ckpt / "tokenizer.json").is_file() or (ckpt / "vocab.txt").is_file():
            tok = AutoTokenizer.from_pretrained(ckpt, local_files_only=True)
            if len(tok) > model.get_input_embeddings().weight.shape[0]:  # extended vocab
                model.resize_token_embeddings(len(tok), mean_resizing=False)
    return VocabStep(tok, before, added, report.share)


def base_meta(base: Path, cfg: TrainSettings, vocab: VocabStep, rows: int) -> dict[str, Any]:
    """What every output's `embedarena_training.json` says; a task adds its own keys."""
    import torch
    import transformers

    return {"base_model": str(base), "config": cfg.model_dump(mode="json"),
            "vocab_before": vocab.before, "vocab_added": vocab.added, "training_rows": rows,
            "transformers": transformers.__version__, "torch": torch.__version__,
            "world_size": world_rank()[0]}


def write_meta(d: Path, meta: Mapping[str, Any]) -> None:
    (d / TRAINING_META).write_text(json.dumps(meta, indent=2, ensure_ascii=False,
                                              default=str), encoding="utf-8")


# -- the Trainer ------------------------------------------------------------------------------
@functools.cache
def trainer_base() -> type:
    """The `Trainer` subclass every task's trainer derives from (built lazily: transformers
    is heavy and optional). A task implements `compute_loss`; this class keeps the loss as
    computed (a per-batch mean) and writes the task's files into every save."""
    from transformers import Trainer

    class TaskTrainer(Trainer):
        def __init__(self, *args: Any, write_files: Callable[[Path], None],
                     **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.write_files = write_files
            # Our loss is already a per-batch mean; never rescale it by token counts.
            self.model_accepts_loss_kwargs = False

        def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
            super()._save(output_dir, state_dict)
            self.write_files(Path(str(output_dir or self.args.output_dir)))

    return TaskTrainer


def training_arguments(cfg: TrainSettings) -> Any:
    """`TrainingArguments` from the settings: the fixed ones, then each setting's mapping."""
    import torch
    from transformers import TrainingArguments

    targs = dict(FIXED_TRAINER_ARGUMENTS)
    for keywords in trainer_arguments(cfg, cuda=torch.cuda.is_available()).values():
        targs.update(keywords)
    try:
        return TrainingArguments(**targs)
    except (ValueError, ImportError) as e:
        raise ConfigError(f"training arguments: {e}") from None


def progress_callback(reporter: progress.Progress) -> Any:
    from transformers import TrainerCallback

    class TaskProgress(TrainerCallback):
        """One progress task for the run (main process only), with the epoch and latest loss."""

        def __init__(self) -> None:
            self.task: progress.Task | None = None
            self.loss: float | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.is_world_process_zero:
                self.task = reporter.task("train", total=state.max_steps,
                                          completed=state.global_step)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.task is not None:
                desc = f"train (epoch {state.epoch:.2f}" + (
                    f", loss {self.loss:.4f})" if self.loss is not None else ")")
                self.task.update(completed=state.global_step, description=desc)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None,
                   **kw: Any) -> None:
            if logs and "loss" in logs:
                self.loss = float(logs["loss"])

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.close()

        def close(self) -> None:
            """Also called when training fails, so no half-drawn bar stays behind."""
            if self.task is not None:
                self.task.close()
                self.task = None

    return TaskProgress()


def epoch_callback(dataset: Any) -> Any:
    """Tells a dataset with `set_epoch` (per-epoch group sampling) which epoch runs."""
    from transformers import TrainerCallback

    class EpochSeed(TrainerCallback):
        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            dataset.set_epoch(int(math.floor((state.epoch or 0.0) + 1e-6)))

    return EpochSeed()


def fit(trainer: Any, cfg: TrainSettings, reporter: progress.Progress, *,
        oom_hint: str, callbacks: tuple[Any, ...] = ()) -> Any:
    """Run (or resume) `trainer` with our callbacks instead of the Trainer's printing ones;
    returns the Trainer's result. Out-of-memory becomes one `EmbedderError` with `oom_hint`."""
    import torch
    from transformers import PrinterCallback, ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    dataset = trainer.train_dataset
    if hasattr(dataset, "set_epoch"):
        trainer.add_callback(epoch_callback(dataset))
    for cb in callbacks:
        trainer.add_callback(cb)
    task = progress_callback(reporter) if cfg.progress else None
    if task is not None:
        trainer.add_callback(task)
    try:
        return trainer.train(resume_from_checkpoint=cfg.resume_from_checkpoint)
    except torch.OutOfMemoryError:
        raise EmbedderError(f"out of GPU memory: {oom_hint}") from None
    finally:
        if task is not None:
            task.close()


def save_final(trainer: Any, out: Path) -> list[tuple[int, float]]:
    """Save the final model (with the task's files) and the trainer state into `out`;
    returns the logged (step, loss) history."""
    trainer.save_model(str(out))
    if trainer.is_world_process_zero():
        trainer.state.save_to_json(str(out / "trainer_state.json"))
    return [(int(h["step"]), float(h["loss"])) for h in trainer.state.log_history
            if "loss" in h]
