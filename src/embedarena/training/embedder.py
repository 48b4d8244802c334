"""Contrastive fine-tuning of a local Hugging Face encoder (FlagEmbedding-style, label-aware).

The Hugging Face `Trainer`, set up once for every task in `training/trainer.py`, does the
machinery (fp16/bf16, gradient accumulation and checkpointing, DeepSpeed, torchrun/accelerate
multi-GPU, checkpoints and resume, TensorBoard, progress, the vocabulary check); this module
adds what a bi-encoder needs: group sampling, pooling + normalisation, the
InfoNCE loss with in-batch false-negative masking and cross-device negatives, a cached
(GradCache-style) loss, and an output directory that `hf`, sentence-transformers and
FlagEmbedding all load (a plain HF model dir plus sentence-transformers module files).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from embedarena.embedders.pooling import pool
from embedarena.embedders.st_format import read_layout, write_st_files
from embedarena.errors import ConfigError, EmbedderError
from embedarena.training.trainer import (
    FIXED_TRAINER_ARGUMENTS,
    SHARED_OWN_SETTINGS,
    TRAINING_META,
    Flags,
    ReportTo,
    TrainResult,
    TrainSettings,
    base_meta,
    check_vocab,
    fit,
    notifier,
    require_training_stack,
    save_final,
    trainer_arguments,
    trainer_base,
    training_arguments,
    world_rank,
    write_meta,
)

__all__ = ["FIXED_TRAINER_ARGUMENTS", "OWN_SETTINGS", "TRAINING_META", "Flags", "ReportTo",
           "TrainConfig", "TrainResult", "encode", "freeze_unused", "train_embedder",
           "trainer_arguments"]


class TrainConfig(TrainSettings):
    """Every setting of `embedarena train embedder`, declared once: the shared Trainer
    settings of `TrainSettings` plus the bi-encoder's own (name, type, default, help and
    command-line spellings). The CLI is generated from these fields and an experiment's
    `finetune:` block sets them by name, so the two cannot drift apart."""

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
    cache_chunk_size: int | None = Field(
        default=None, ge=1, description="Cached (GradCache) loss: encode in chunks of this "
        "size, so a big batch fits a small GPU (one process only).")
    drop_dense: bool = Field(
        default=False,
        description="Train a model with Dense modules as a bare transformer (FlagEmbedding "
        "does).")


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
    """The shared `Trainer` subclass with the bi-encoder's loss (built lazily)."""

    class EmbedderTrainer(trainer_base()):  # type: ignore[misc]
        """Loss: InfoNCE over query/passage groups; every save also writes the ST files."""

        def __init__(self, *args: Any, loss_fn: Any, pooling: str, normalize: bool,
                     cache_chunk_size: int | None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.loss_fn = loss_fn
            self.pooling = pooling
            self.normalize = normalize
            self.cache_chunk_size = cache_chunk_size
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

    return EmbedderTrainer


#: Settings our own code consumes (model, data, loss, pooling, output files, resume point).
#: Every other setting must have an entry in `trainer_arguments`; a test checks that the two
#: together are exactly the fields, so a new setting cannot silently miss the Trainer.
OWN_SETTINGS = SHARED_OWN_SETTINGS | {
    "temperature", "in_batch_negatives", "cross_device_negatives", "mask_false_negatives",
    "train_group_size", "query_max_len", "passage_max_len", "query_instruction", "pooling",
    "normalize", "cache_chunk_size", "drop_dense",
}


def load_training_data(paths: list[str]) -> tuple[list[Any], list[str]]:
    """Every train JSONL, concatenated, with one load summary line per file."""
    from embedarena.training.data import load_train_files

    return load_train_files(paths)


def train_embedder(cfg: TrainConfig, log: Callable[[str], None] | None = None) -> TrainResult:
    """Fine-tune `cfg.model` on `cfg.train`; the final model lands in `cfg.output_dir`.

    Notes (vocabulary check, data counts) go to `log(msg)` when given, else to the current
    `embedarena.progress` (which also gets the training task), main process only; under
    torchrun every process runs this function and the Trainer coordinates.
    """
    require_training_stack(cfg)
    from transformers import AutoModel, AutoTokenizer

    from embedarena import progress
    from embedarena.embedders.hf import resolve_model_dir
    from embedarena.training.data import GroupCollator, GroupDataset
    from embedarena.training.losses import InfoNCELoss

    if cfg.cache_chunk_size and world_rank()[0] > 1:
        raise ConfigError("the cached (GradCache) loss runs in one process; under torchrun use "
                          "cross-device negatives and gradient accumulation instead")
    reporter = progress.current()
    say = notifier(log, reporter)
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
    try:
        tok = AutoTokenizer.from_pretrained(layout.transformer_dir, local_files_only=True)
        model = AutoModel.from_pretrained(layout.transformer_dir, local_files_only=True)
    except (OSError, ValueError) as e:
        raise EmbedderError(f"cannot load the model in {layout.transformer_dir}: {e}") from None
    freeze_unused(model)
    texts = list(dict.fromkeys([ex.query for ex in examples]
                               + [t for ex in examples for t in (*ex.pos, *ex.neg)]))
    vocab = check_vocab(model, tok, texts, cfg, say)
    tok = vocab.tokenizer
    dataset = GroupDataset(examples, cfg.train_group_size, cfg.seed)
    for line in dataset.stats.lines():
        say(line)
    collator = GroupCollator(tok, cfg.query_max_len, cfg.passage_max_len, cfg.query_instruction)
    loss_fn = InfoNCELoss(cfg.temperature, cfg.in_batch_negatives, cfg.cross_device_negatives,
                          cfg.mask_false_negatives)
    hidden = int(model.config.hidden_size)
    meta = {**base_meta(base, cfg, vocab, len(examples)), "pooling": pooling,
            "normalize": cfg.normalize}

    def st_files(d: Path) -> None:
        write_st_files(d, hidden, pooling, cfg.normalize, cfg.passage_max_len,
                       cfg.query_instruction)
        write_meta(d, meta)

    trainer = _make_trainer_class()(
        model=model, args=training_arguments(cfg), train_dataset=dataset,
        data_collator=collator, processing_class=tok, write_files=st_files, loss_fn=loss_fn,
        pooling=pooling, normalize=cfg.normalize, cache_chunk_size=cfg.cache_chunk_size)
    result = fit(trainer, cfg, reporter,
                 oom_hint="lower --batch-size or --passage-max-len, or use --cache-chunk-size "
                 "(GradCache) or --gradient-checkpointing")
    losses = save_final(trainer, out)
    return TrainResult(out, trainer.state.global_step, getattr(result, "training_loss", None),
                       losses, vocab.before, vocab.added, dataset.stats.lines(),
                       cfg.resume_from_checkpoint)
