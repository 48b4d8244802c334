"""Contrastive fine-tuning of a local Hugging Face encoder (FlagEmbedding-style, label-aware).

The Hugging Face `Trainer` does the machinery (fp16/bf16, gradient accumulation and
checkpointing, DeepSpeed, torchrun/accelerate multi-GPU, checkpoints and resume, TensorBoard);
this module adds what a bi-encoder needs: group sampling, pooling + normalisation, the
InfoNCE loss with in-batch false-negative masking and cross-device negatives, a cached
(GradCache-style) loss, and an output directory that `hf`, sentence-transformers and
FlagEmbedding all load (a plain HF model dir plus sentence-transformers module files).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from embedarena.errors import ConfigError, EmbedderError, MissingExtraError

#: Written into every output dir (and checkpoint) so a model says how it was made.
TRAINING_META = "embedarena_training.json"


@dataclass
class TrainConfig:
    """Every knob of `embedarena train embedder`; names follow FlagEmbedding where it has one."""

    model: str
    train: list[str]
    output_dir: str
    temperature: float = 0.02
    in_batch_negatives: bool = True
    cross_device_negatives: bool = True
    mask_false_negatives: bool = True
    train_group_size: int = 8
    query_max_len: int = 64
    passage_max_len: int = 256
    query_instruction: str = ""
    pooling: str | None = None
    normalize: bool = True
    learning_rate: float = 2e-5
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 16
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    fp16: bool = False
    bf16: bool = False
    gradient_checkpointing: bool = False
    gradient_accumulation_steps: int = 1
    cache_chunk_size: int | None = None
    deepspeed: str | None = None
    save_steps: int | None = None
    save_total_limit: int | None = 2
    resume_from_checkpoint: str | None = None
    seed: int = 42
    logging_steps: int = 10
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])
    extend_vocab: bool = False
    vocab_min_count: int = 1
    drop_dense: bool = False
    dataloader_num_workers: int = 0
    device: str | None = None
    progress: bool = True

    def check(self) -> None:
        if self.fp16 and self.bf16:
            raise ConfigError("choose one of --fp16 and --bf16")
        if self.temperature <= 0:
            raise ConfigError("temperature must be positive")
        if self.pooling not in (None, "cls", "mean"):
            raise ConfigError(f"pooling is cls or mean, not {self.pooling!r}")
        if self.cache_chunk_size is not None and self.cache_chunk_size < 1:
            raise ConfigError("the cached loss's chunk size is at least 1")
        if self.train_group_size < 1:
            raise ConfigError("train_group_size is at least 1")
        unknown = set(self.report_to) - {"tensorboard", "wandb", "none"}
        if unknown:
            raise ConfigError(f"report_to: unknown {sorted(unknown)}; use tensorboard, wandb "
                              "or none")
        if "wandb" in self.report_to:
            import importlib.util

            if importlib.util.find_spec("wandb") is None:
                raise ConfigError("--report-to wandb needs the wandb package (pip install "
                                  "wandb); TensorBoard logging needs nothing extra")


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


def _pool(hidden: Any, mask: Any, pooling: str) -> Any:
    if pooling == "cls":
        return hidden[:, 0]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


def encode(model: Any, batch: dict[str, Any], pooling: str, normalize: bool) -> Any:
    """Pooled (and normalised) sentence vectors for a tokenised batch, with gradient."""
    import torch

    out = model(**batch)
    hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state
    vec = _pool(hidden, batch["attention_mask"], pooling)
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


def write_st_files(out: Path, hidden: int, pooling: str, normalize: bool, max_seq_length: int,
                   query_instruction: str, meta: dict[str, Any]) -> None:
    """Make a plain HF model dir a sentence-transformers dir too (Transformer at the root)."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    (out / "1_Pooling").mkdir(parents=True, exist_ok=True)
    (out / "modules.json").write_text(json.dumps(modules, indent=2), encoding="utf-8")
    (out / "sentence_bert_config.json").write_text(json.dumps(
        {"max_seq_length": max_seq_length, "do_lower_case": False}, indent=2), encoding="utf-8")
    (out / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": hidden,
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }, indent=2), encoding="utf-8")
    st_cfg: dict[str, Any] = {"similarity_fn_name": "cosine"}
    if query_instruction:
        st_cfg["prompts"] = {"query": query_instruction, "document": ""}
    (out / "config_sentence_transformers.json").write_text(json.dumps(st_cfg, indent=2),
                                                           encoding="utf-8")
    (out / TRAINING_META).write_text(json.dumps(meta, indent=2, ensure_ascii=False,
                                                default=str), encoding="utf-8")


def _world_rank() -> tuple[int, int]:
    return int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))


def _progress_callback(console: Any) -> Any:
    from transformers import TrainerCallback

    class RichProgress(TrainerCallback):
        """One rich bar for the run (main process only), with the latest loss."""

        def __init__(self) -> None:
            self.bar: Any = None
            self.task: Any = None
            self.loss: float | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if not state.is_world_process_zero:
                return
            from embedarena.pipeline import progress_bar

            self.bar = progress_bar(console)
            self.bar.start()
            self.task = self.bar.add_task("train", total=state.max_steps,
                                          completed=state.global_step)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is not None:
                desc = f"train (epoch {state.epoch:.2f}" + (
                    f", loss {self.loss:.4f})" if self.loss is not None else ")")
                self.bar.update(self.task, completed=state.global_step, description=desc)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None,
                   **kw: Any) -> None:
            if logs and "loss" in logs:
                self.loss = float(logs["loss"])

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is not None:
                self.bar.stop()
                self.bar = None

    return RichProgress()


def _epoch_callback(dataset: Any) -> Any:
    from transformers import TrainerCallback

    class EpochSeed(TrainerCallback):
        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            dataset.set_epoch(int(math.floor((state.epoch or 0.0) + 1e-6)))

    return EpochSeed()


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


def train_embedder(cfg: TrainConfig, console: Any = None,
                   log: Any = None) -> TrainResult:
    """Fine-tune `cfg.model` on `cfg.train`; the final model lands in `cfg.output_dir`.

    `log(msg)` receives human-readable notes (vocabulary check, data counts) on the main
    process; under torchrun every process runs this function and the Trainer coordinates.
    """
    cfg.check()
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
    from embedarena.embedders.hf import read_layout, resolve_model_dir
    from embedarena.training.data import GroupCollator, GroupDataset
    from embedarena.training.losses import InfoNCELoss
    from embedarena.training.vocab import extend_vocab, new_tokens_for, vocab_report

    world, rank = _world_rank()
    if cfg.cache_chunk_size and world > 1:
        raise ConfigError("the cached (GradCache) loss runs in one process; under torchrun use "
                          "cross-device negatives and gradient accumulation instead")

    def say(msg: str) -> None:
        if rank == 0 and log is not None:
            log(msg)

    base = resolve_model_dir(cfg.model)
    layout = read_layout(base)
    if layout.dense and not cfg.drop_dense:
        raise ConfigError(f"{base} has sentence-transformers Dense modules (e.g. ACGE's "
                          "projection); training them is not supported yet. Pass "
                          "--drop-dense to train the transformer alone, as FlagEmbedding does")
    pooling = cfg.pooling or (layout.pooling if layout.pooling in ("cls", "mean") else "cls")
    out = Path(cfg.output_dir)
    examples, notes = load_training_data(cfg.train)
    from rich.markup import escape  # data and paths may contain [brackets]

    for n in notes:
        say(escape(n))
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # our rich bar is the only one
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
    say("vocabulary: " + escape(report.summary()))
    added = 0
    resuming = cfg.resume_from_checkpoint is not None
    if report.blind and not cfg.extend_vocab and not resuming:
        say(f"[yellow]warning:[/] {report.share:.0%} of the training text is unknown to this "
            "model's tokenizer, so it cannot tell those texts apart; pass --extend-vocab to add "
            "the missing characters/words as new tokens, or pick a model for this language")
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
    meta = {"base_model": str(base), "config": asdict(cfg), "pooling": pooling,
            "normalize": cfg.normalize, "vocab_before": vocab_before, "vocab_added": added,
            "training_rows": len(examples), "transformers": transformers.__version__,
            "torch": torch.__version__, "world_size": world}

    def st_files(d: Path) -> None:
        write_st_files(d, hidden, pooling, cfg.normalize, cfg.passage_max_len,
                       cfg.query_instruction, meta)

    report_to = [r for r in cfg.report_to if r != "none"]
    targs: dict[str, Any] = dict(
        output_dir=str(out), per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        warmup_ratio=cfg.warmup_ratio, weight_decay=cfg.weight_decay, fp16=cfg.fp16,
        bf16=cfg.bf16, gradient_checkpointing=cfg.gradient_checkpointing,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, deepspeed=cfg.deepspeed,
        save_strategy="steps" if cfg.save_steps else "no", save_steps=cfg.save_steps or 500,
        save_total_limit=cfg.save_total_limit, seed=cfg.seed, data_seed=cfg.seed,
        logging_steps=cfg.logging_steps, logging_dir=str(out / "runs"),
        report_to=report_to or "none", remove_unused_columns=False, label_names=[],
        dataloader_num_workers=cfg.dataloader_num_workers, disable_tqdm=True,
        ddp_find_unused_parameters=False, save_safetensors=True,
        dataloader_pin_memory=torch.cuda.is_available() and cfg.device != "cpu",
    )
    if cfg.gradient_checkpointing:
        targs["gradient_checkpointing_kwargs"] = {"use_reentrant": False}
    if cfg.device == "cpu":
        targs["use_cpu"] = True
    import inspect

    accepted = set(inspect.signature(TrainingArguments.__init__).parameters)
    targs = {k: v for k, v in targs.items() if k in accepted}
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
    if cfg.progress:
        trainer.add_callback(_progress_callback(console))
    try:
        result = trainer.train(resume_from_checkpoint=cfg.resume_from_checkpoint)
    except torch.OutOfMemoryError:
        raise EmbedderError("out of GPU memory: lower --batch-size or --passage-max-len, or "
                            "use --cache-chunk-size (GradCache) or --gradient-checkpointing") \
            from None
    trainer.save_model(str(out))
    if trainer.is_world_process_zero():
        trainer.state.save_to_json(str(out / "trainer_state.json"))
    losses = [(int(h["step"]), float(h["loss"])) for h in trainer.state.log_history
              if "loss" in h]
    return TrainResult(out, trainer.state.global_step, getattr(result, "training_loss", None),
                       losses, vocab_before, added, dataset.stats.lines(),
                       cfg.resume_from_checkpoint)
