"""Contrastive fine-tuning of a local Hugging Face encoder (FlagEmbedding-style, label-aware).

The Hugging Face `Trainer` does the machinery (fp16/bf16, gradient accumulation and
checkpointing, DeepSpeed, torchrun/accelerate multi-GPU, checkpoints and resume, TensorBoard);
this module adds what a bi-encoder needs: group sampling, pooling + normalisation, the
InfoNCE loss with in-batch false-negative masking and cross-device negatives, a cached
(GradCache-style) loss, and an output directory that `hf`, sentence-transformers and
FlagEmbedding all load (a plain HF model dir plus sentence-transformers module files).
"""

from __future__ import annotations

import difflib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
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
from embedarena.embedders.pooling import pool
from embedarena.embedders.st_format import read_layout, write_st_files
from embedarena.errors import ConfigError, EmbedderError, MissingExtraError

#: Written into every output dir (and checkpoint) so a model says how it was made.
TRAINING_META = "embedarena_training.json"


class Flags:
    """Extra command-line spellings of a setting, declared with it (the CLI adds
    `--dash-name` itself and reads `_` as `-`), so FlagEmbedding scripts translate one to one.

    `switch`: a bare flag that sets this value (`--cpu` sets device "cpu").
    `existing_file`: the value (each item of a list) names a file that must exist.
    """

    __slots__ = ("names", "switch", "existing_file")

    def __init__(self, *names: str, switch: str | None = None,
                 existing_file: bool = False) -> None:
        self.names = names
        self.switch = switch
        self.existing_file = existing_file


ReportTo = Literal["tensorboard", "wandb", "none"]


class TrainConfig(BaseModel):
    """Every setting of `embedarena train embedder`, declared once: name, type, default,
    help and command-line spellings. The CLI is generated from these fields and an
    experiment's `finetune:` block sets them by name, so the two cannot drift apart."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Annotated[str, Flags("-m", "--model_name_or_path")] = Field(
        description="Base encoder: a local HF/sentence-transformers dir, or `minilm`.")
    train: Annotated[list[str], Flags("-t", "--train_data", existing_file=True)] = Field(
        min_length=1, description="Train JSONL {query, pos, neg}. Repeatable.")
    output_dir: Annotated[str, Flags("--output", "-o")] = Field(
        description="Output model dir.")
    temperature: float = Field(default=0.02, gt=0, description="InfoNCE temperature.")
    in_batch_negatives: bool = Field(
        default=True, description="Use other queries' passages as negatives.")
    cross_device_negatives: Annotated[bool, Flags("--negatives_cross_device")] = Field(
        default=True,
        description="Under torchrun, gather passages from every process (with gradient).")
    mask_false_negatives: bool = Field(
        default=True, description="Mask in-batch passages that are also gold for the query.")
    train_group_size: int = Field(
        default=8, ge=1, description="1 positive + n-1 negatives per query.")
    query_max_len: int = Field(default=64, ge=1, description="Query max tokens.")
    passage_max_len: int = Field(default=256, ge=1, description="Passage max tokens.")
    query_instruction: Annotated[str, Flags("--query_instruction_for_retrieval")] = Field(
        default="", description="Prepended to every query (BGE-style).")
    pooling: Annotated[Literal["cls", "mean"] | None, Flags("--sentence_pooling_method")] = (
        Field(default=None, description="cls | mean (default: the model dir's)."))
    normalize: bool = Field(default=True, description="Unit-length embeddings.")
    learning_rate: Annotated[float, Flags("--lr")] = Field(
        default=2e-5, gt=0, description="Learning rate.")
    epochs: Annotated[float, Flags("--num_train_epochs")] = Field(
        default=1.0, gt=0, description="Epochs.")
    max_steps: int = Field(
        default=-1, ge=-1, description="Stop after this many optimizer steps (-1: by epochs).")
    batch_size: Annotated[int, Flags("-b", "--per_device_train_batch_size")] = Field(
        default=16, ge=1, description="Queries per device per step.")
    warmup_ratio: float = Field(
        default=0.1, ge=0, lt=1, description="Warm-up share of the steps.")
    weight_decay: float = Field(default=0.01, ge=0, description="AdamW weight decay.")
    fp16: bool = Field(default=False, description="Mixed precision fp16 (GPU).")
    bf16: bool = Field(default=False, description="Mixed precision bf16 (Ampere+ GPU).")
    gradient_checkpointing: bool = Field(
        default=False,
        description="Recompute activations in the backward pass: less memory, slower steps.")
    gradient_accumulation_steps: int = Field(
        default=1, ge=1, description="Accumulate gradients over this many steps.")
    cache_chunk_size: int | None = Field(
        default=None, ge=1, description="Cached (GradCache) loss: encode in chunks of this "
        "size, so a big batch fits a small GPU (one process only).")
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
    report_to: list[ReportTo] = Field(
        default_factory=lambda: list[ReportTo](["tensorboard"]),
        description="tensorboard | wandb | none (comma-separated or repeated).")
    extend_vocab: bool = Field(
        default=False,
        description="Add characters/words the tokenizer maps to [UNK] as new tokens.")
    vocab_min_count: int = Field(
        default=1, ge=1,
        description="With --extend-vocab: add pieces seen at least this often.")
    drop_dense: bool = Field(
        default=False,
        description="Train a model with Dense modules as a bare transformer (FlagEmbedding "
        "does).")
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

    @model_validator(mode="wrap")
    @classmethod
    def _as_config_error(cls, data: Any, handler: ModelWrapValidatorHandler[TrainConfig]
                         ) -> TrainConfig:
        """Unknown names and bad values become one `ConfigError` naming the setting, so a
        typo in an experiment file or script is refused instead of silently ignored."""
        if isinstance(data, dict):
            names = cls.setting_names()
            unknown = sorted(set(data) - set(names))
            if unknown:
                hints = [f"{u} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(
                    u, names, n=1)) else u for u in unknown]
                raise ConfigError(f"unknown training settings: {', '.join(hints)}; allowed: "
                                  f"{', '.join(sorted(names))}")
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
    def _consistent(self) -> TrainConfig:
        if self.fp16 and self.bf16:
            raise ConfigError("choose one of --fp16 and --bf16")
        return self


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


def freeze_unused(model: Any) -> list[str]:
    """Stop gradients for parameters the sentence vector never uses (BERT's `pooler`).

    Under DDP an unused parameter with `requires_grad` leaves its gradient bucket unready, and
    then no bucket is all-reduced: each process silently steps with its own gradient.
    """
    frozen = []
    for name, p in model.named_parameters():
        if name.startswith("pooler.") and p.requires_grad:
            p.requires_grad_(False)
            frozen.append(name)
    return frozen


def encode(model: Any, batch: dict[str, Any], pooling: str, normalize: bool) -> Any:
    """Pooled (and normalised) sentence vectors for a tokenised batch, with gradient."""
    import torch

    out = model(**batch)
    hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state
    vec = pool(hidden, batch["attention_mask"], pooling)
    return torch.nn.functional.normalize(vec.float(), dim=-1) if normalize else vec.float()


class _RandState:
    """Snapshot of the RNG state so a GradCache replay sees the same dropout masks."""

    def __init__(self) -> None:
        import torch

        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None

    def restore(self) -> None:
        import torch

        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)


def _chunks(batch: dict[str, Any], size: int) -> list[dict[str, Any]]:
    n = next(iter(batch.values())).shape[0]
    return [{k: v[i:i + size] for k, v in batch.items()} for i in range(0, n, size)]


def _make_trainer_class() -> type:
    """The Trainer subclass (built lazily: transformers is heavy and optional)."""
    from transformers import Trainer

    class EmbedderTrainer(Trainer):
        """`Trainer` whose loss is InfoNCE over query/passage groups; saves ST files too."""

        def __init__(self, *args: Any, loss_fn: Any, pooling: str, normalize: bool,
                     cache_chunk_size: int | None, st_files: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.loss_fn = loss_fn
            self.pooling = pooling
            self.normalize = normalize
            self.cache_chunk_size = cache_chunk_size
            self.st_files = st_files
            # Our loss is already a per-batch mean; never rescale it by token counts.
            self.model_accepts_loss_kwargs = False
            self.masked_total = 0

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            q_in, p_in = inputs["query"], inputs["passage"]
            group = p_in["input_ids"].shape[0] // q_in["input_ids"].shape[0]
            extra = (inputs.get("passage_keys"), inputs.get("query_gold"),
                     inputs.get("query_gold_mask"))
            if self.cache_chunk_size and model.training:
                loss = self._cached_loss(model, q_in, p_in, group, extra)
            else:
                q = encode(model, q_in, self.pooling, self.normalize)
                p = encode(model, p_in, self.pooling, self.normalize)
                loss = self.loss_fn(q, p, group, *extra)
            self.masked_total += self.loss_fn.last_masked
            return (loss, {}) if return_outputs else loss

        def _cached_loss(self, model: Any, q_in: dict[str, Any], p_in: dict[str, Any],
                         group: int, extra: tuple[Any, ...]) -> Any:
            """GradCache: embed in chunks without a graph, take the loss's gradient w.r.t. the
            embeddings, then (in the backward pass) re-run each chunk with a graph and push
            that gradient through it. Memory is one chunk's activations, whatever the batch."""
            import torch

            size = self.cache_chunk_size or 1
            reps: list[list[Any]] = []
            states: list[list[_RandState]] = []
            chunked = [_chunks(q_in, size), _chunks(p_in, size)]
            for parts in chunked:
                r, s = [], []
                for part in parts:
                    s.append(_RandState())
                    with torch.no_grad():
                        r.append(encode(model, part, self.pooling, self.normalize))
                reps.append(r)
                states.append(s)
            q = torch.cat(reps[0]).detach().requires_grad_()
            p = torch.cat(reps[1]).detach().requires_grad_()
            with torch.enable_grad():
                loss = self.loss_fn(q, p, group, *extra)
                loss.backward()
            if q.grad is None or p.grad is None:
                raise RuntimeError("the loss did not reach the cached embeddings")
            grads = [q.grad, p.grad]
            trainer = self

            autocast = getattr(self, "autocast_smart_context_manager", None)

            def replay(grad_out: Any) -> None:
                import contextlib

                ctx = autocast() if callable(autocast) else contextlib.nullcontext()
                with torch.enable_grad(), ctx:
                    for parts, st, g in zip(chunked, states, grads):
                        start = 0
                        for part, state in zip(parts, st):
                            n = part["input_ids"].shape[0]
                            saved = _RandState()
                            state.restore()
                            rep = encode(model, part, trainer.pooling, trainer.normalize)
                            saved.restore()
                            surrogate = (rep * (g[start:start + n] * grad_out)).sum()
                            surrogate.backward()
                            start += n

            out = loss.detach().requires_grad_()
            out.register_hook(lambda g: replay(g))
            return out

        def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
            super()._save(output_dir, state_dict)
            self.st_files(Path(str(output_dir or self.args.output_dir)))

    return EmbedderTrainer


def _world_rank() -> tuple[int, int]:
    return int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))


def _progress_callback(reporter: progress.Progress) -> Any:
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


def _epoch_callback(dataset: Any) -> Any:
    from transformers import TrainerCallback

    class EpochSeed(TrainerCallback):
        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            dataset.set_epoch(int(math.floor((state.epoch or 0.0) + 1e-6)))

    return EpochSeed()


#: Settings our own code consumes (model, data, loss, pooling, output files, resume point).
#: Every other setting must have an entry in `trainer_arguments`; a test checks that the two
#: together are exactly the fields, so a new setting cannot silently miss the Trainer.
OWN_SETTINGS = frozenset({
    "model", "train", "temperature", "in_batch_negatives", "cross_device_negatives",
    "mask_false_negatives", "train_group_size", "query_max_len", "passage_max_len",
    "query_instruction", "pooling", "normalize", "cache_chunk_size", "resume_from_checkpoint",
    "extend_vocab", "vocab_min_count", "drop_dense", "progress",
})
#: `TrainingArguments` our loop needs whatever the settings: batches are dicts of our own,
#: there are no labels, progress goes through `embedarena.progress`, the pooler is frozen.
FIXED_TRAINER_ARGUMENTS: dict[str, Any] = {
    "remove_unused_columns": False, "label_names": [], "disable_tqdm": True,
    "ddp_find_unused_parameters": False,
}


def trainer_arguments(cfg: TrainConfig, cuda: bool) -> dict[str, dict[str, Any]]:
    """Each Trainer-bound setting -> the `TrainingArguments` keywords it becomes
    (transformers 5 names). Explicit rather than filtered against the installed signature:
    a renamed argument then fails in a test instead of being dropped without a word."""
    report_to = [r for r in cfg.report_to if r != "none"]
    return {
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


def load_training_data(paths: list[str]) -> tuple[list[Any], list[str]]:
    """Every train JSONL, concatenated, with one load summary line per file."""
    from embedarena.data.readers import load_train_with_report

    examples: list[Any] = []
    notes: list[str] = []
    for p in paths:
        ex, report = load_train_with_report(p)
        examples.extend(ex)
        notes.append(report.summary())
    if not examples:
        raise ConfigError("no training examples")
    return examples, notes


def train_embedder(cfg: TrainConfig, log: Callable[[str], None] | None = None) -> TrainResult:
    """Fine-tune `cfg.model` on `cfg.train`; the final model lands in `cfg.output_dir`.

    Notes (vocabulary check, data counts) go to `log(msg)` when given, else to the current
    `embedarena.progress` (which also gets the training task), main process only; under
    torchrun every process runs this function and the Trainer coordinates.
    """
    if "wandb" in cfg.report_to:
        import importlib.util

        if importlib.util.find_spec("wandb") is None:
            raise ConfigError("--report-to wandb needs the wandb package (pip install "
                              "wandb); TensorBoard logging needs nothing extra")
    try:
        import torch
        import transformers
        from transformers import (
            AutoModel,
            AutoTokenizer,
            PrinterCallback,
            ProgressCallback,
            TrainingArguments,
        )
    except ImportError as e:
        raise MissingExtraError(e.name or "transformers", "train") from None
    if int(transformers.__version__.split(".")[0]) < 5:
        raise ConfigError(f"training needs transformers 5 or newer (found "
                          f"{transformers.__version__}): pip install -U 'transformers>=5'")
    from embedarena.embedders.hf import resolve_model_dir
    from embedarena.training.data import GroupCollator, GroupDataset
    from embedarena.training.losses import InfoNCELoss
    from embedarena.training.vocab import extend_vocab, new_tokens_for, vocab_report

    world, rank = _world_rank()
    if cfg.cache_chunk_size and world > 1:
        raise ConfigError("the cached (GradCache) loss runs in one process; under torchrun use "
                          "cross-device negatives and gradient accumulation instead")

    reporter = progress.current()

    def say(msg: str, level: progress.Level = "info") -> None:
        if rank != 0:
            return
        if log is not None:
            log(f"warning: {msg}" if level == "warning" else msg)
        else:
            reporter.note(msg, level=level)

    base = resolve_model_dir(cfg.model)
    layout = read_layout(base)
    if layout.dense and not cfg.drop_dense:
        raise ConfigError(f"{base} has sentence-transformers Dense modules (e.g. ACGE's "
                          "projection); training them is not supported yet. Pass "
                          "--drop-dense to train the transformer alone, as FlagEmbedding does")
    pooling = cfg.pooling or (layout.pooling if layout.pooling in ("cls", "mean") else "cls")
    out = Path(cfg.output_dir)
    examples, notes = load_training_data(cfg.train)
    for n in notes:
        say(n)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # our progress task is the only one
    try:
        tok = AutoTokenizer.from_pretrained(layout.transformer_dir, local_files_only=True)
        model = AutoModel.from_pretrained(layout.transformer_dir, local_files_only=True)
    except (OSError, ValueError) as e:
        raise EmbedderError(f"cannot load the model in {layout.transformer_dir}: {e}") from None
    freeze_unused(model)
    texts = list(dict.fromkeys([ex.query for ex in examples]
                               + [t for ex in examples for t in (*ex.pos, *ex.neg)]))
    report = vocab_report(tok, texts)
    vocab_before = {"tokens": report.tokens, "unknown": report.unknown,
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
    dataset = GroupDataset(examples, cfg.train_group_size, cfg.seed)
    for line in dataset.stats.lines():
        say(line)
    collator = GroupCollator(tok, cfg.query_max_len, cfg.passage_max_len, cfg.query_instruction)
    loss_fn = InfoNCELoss(cfg.temperature, cfg.in_batch_negatives, cfg.cross_device_negatives,
                          cfg.mask_false_negatives)
    hidden = int(model.config.hidden_size)
    meta = {"base_model": str(base), "config": cfg.model_dump(mode="json"), "pooling": pooling,
            "normalize": cfg.normalize, "vocab_before": vocab_before, "vocab_added": added,
            "training_rows": len(examples), "transformers": transformers.__version__,
            "torch": torch.__version__, "world_size": world}

    def st_files(d: Path) -> None:
        write_st_files(d, hidden, pooling, cfg.normalize, cfg.passage_max_len,
                       cfg.query_instruction)
        (d / TRAINING_META).write_text(json.dumps(meta, indent=2, ensure_ascii=False,
                                                  default=str), encoding="utf-8")

    targs = dict(FIXED_TRAINER_ARGUMENTS)
    for keywords in trainer_arguments(cfg, cuda=torch.cuda.is_available()).values():
        targs.update(keywords)
    try:
        args = TrainingArguments(**targs)
    except (ValueError, ImportError) as e:
        raise ConfigError(f"training arguments: {e}") from None
    trainer_cls = _make_trainer_class()
    trainer = trainer_cls(model=model, args=args, train_dataset=dataset, data_collator=collator,
                          processing_class=tok, loss_fn=loss_fn, pooling=pooling,
                          normalize=cfg.normalize, cache_chunk_size=cfg.cache_chunk_size,
                          st_files=st_files)
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_epoch_callback(dataset))
    task = _progress_callback(reporter) if cfg.progress else None
    if task is not None:
        trainer.add_callback(task)
    try:
        result = trainer.train(resume_from_checkpoint=cfg.resume_from_checkpoint)
    except torch.OutOfMemoryError:
        raise EmbedderError("out of GPU memory: lower --batch-size or --passage-max-len, or "
                            "use --cache-chunk-size (GradCache) or --gradient-checkpointing") \
            from None
    finally:
        if task is not None:
            task.close()
    trainer.save_model(str(out))
    if trainer.is_world_process_zero():
        trainer.state.save_to_json(str(out / "trainer_state.json"))
    losses = [(int(h["step"]), float(h["loss"])) for h in trainer.state.log_history
              if "loss" in h]
    return TrainResult(out, trainer.state.global_step, getattr(result, "training_loss", None),
                       losses, vocab_before, added, dataset.stats.lines(),
                       cfg.resume_from_checkpoint)
