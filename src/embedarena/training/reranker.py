"""Cross-encoder reranker fine-tuning (FlagEmbedding's reranker and RAG-Retrieval's).

A cross-encoder reads "query [SEP] passage" and gives one logit. The base is a reranker dir
(`AutoModelForSequenceClassification` with one logit: bge-reranker-base/v2-m3,
bce-reranker-base_v1) or any BERT-like encoder dir, to which a fresh 1-logit head is added.
Three losses:

- `group` (FlagEmbedding): listwise softmax cross-entropy over each query's group, 1 positive +
  `train_group_size - 1` negatives, positive first, drawn each epoch from `{query, pos, neg}`
  JSONL (what `embedarena mine` writes); `--batch-size` counts queries.
- `bce` (RAG-Retrieval "classification"): (query, pos) -> 1, (query, neg) -> 0, binary
  cross-entropy on the logit; `--batch-size` counts pairs.
- `mse` (RAG-Retrieval "regression"): graded `query<TAB>doc<TAB>label` TSV, each label mapped
  to a target in 0..1 (`--label-map`, default 3→1, 2→0.75, 1→0.5, 0→0.25), MSE on
  sigmoid(logit); `--batch-size` counts pairs.

Everything else (Trainer, arguments, progress, vocabulary check, checkpoints, resume) is the
shared machinery of `training/trainer.py`, the same as `train embedder`; the training-health
check of `training/health.py` stops a collapsed run. The output dir is a standard HF
sequence-classification dir (num_labels=1) plus `embedarena_training.json`; its config tells
sentence-transformers' `CrossEncoder` to apply a sigmoid, so `predict` gives sigmoid(logit),
the 0..1 score RAG-Retrieval's users read (the ranking is the logits' either way).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from embedarena.errors import ConfigError, EmbedderError
from embedarena.training.trainer import (
    SHARED_OWN_SETTINGS,
    Flags,
    Say,
    TrainResult,
    TrainSettings,
    base_meta,
    check_vocab,
    fit,
    notifier,
    require_training_stack,
    save_final,
    trainer_base,
    training_arguments,
    write_meta,
)

LossName = Literal["group", "bce", "mse"]
#: Other tools' names for the losses (RAG-Retrieval spells "classfication" in its docs).
LOSS_SPELLINGS = {"classification": "bce", "classfication": "bce", "point_ce": "bce",
                  "regression": "mse", "point_mse": "mse", "listwise": "group"}
#: RAG-Retrieval's label2id for graded 3/2/1/0 data.
DEFAULT_LABEL_MAP = {"3": 1.0, "2": 0.75, "1": 0.5, "0": 0.25}
#: What `CrossEncoder.predict` applies to the logit (written into the output's config).
SIGMOID = "torch.nn.modules.activation.Sigmoid"
#: Probe groups scored by the training-health check.
PROBE_GROUPS = 4


def parse_label_map(text: str) -> dict[str, float]:
    """`"3=1,2=0.75,1=0.5,0=0.25"` -> {"3": 1.0, ...}."""
    out: dict[str, float] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        label, sep, value = item.partition("=")
        if not sep or not label.strip():
            raise ValueError(f"label map items are LABEL=SCORE, got {item.strip()!r}")
        try:
            out[label.strip()] = float(value)
        except ValueError:
            raise ValueError(f"label {label.strip()!r}: {value.strip()!r} is not a number"
                             ) from None
    return out


class RerankerConfig(TrainSettings):
    """Every setting of `embedarena train reranker`: the shared Trainer settings of
    `TrainSettings` plus the cross-encoder's own, with FlagEmbedding's and RAG-Retrieval's
    spellings (`--train_group_size`, `--max_len`, `--loss_type`, `--dataset`, ...)."""

    model: Annotated[str, Flags("-m", "--model_name_or_path")] = Field(
        description="Base: a reranker dir (one logit) or an encoder dir (a fresh 1-logit "
        "head is added), or `minilm`.")
    train: Annotated[list[str], Flags("-t", "--train_data", "--dataset",
                                      existing_file=True)] = Field(
        min_length=1, description="Train JSONL {query, pos, neg}, or graded TSV "
        "query<TAB>doc<TAB>label (.tsv/.txt). Repeatable.")
    batch_size: Annotated[int, Flags("-b", "--per_device_train_batch_size")] = Field(
        default=16, ge=1, description="Per device per step: queries (groups) for --loss "
        "group, (query, passage) pairs for bce/mse.")
    loss: Annotated[LossName, Flags("--loss_type", values=LOSS_SPELLINGS)] = Field(
        default="group", description="group (FlagEmbedding: listwise CE over 1 positive + "
        "negatives) | bce (RAG-Retrieval classification) | mse (RAG-Retrieval regression, "
        "graded TSV); --loss_type classification/regression also work.")
    train_group_size: int = Field(
        default=8, ge=2, description="--loss group: 1 positive + n-1 negatives per query.")
    max_len: int = Field(default=512, ge=2, description="Max tokens of a (query, passage) "
                         "pair, truncated longest-first.")
    label_map: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_LABEL_MAP),
        description="Graded TSV label -> target in 0..1, as LABEL=SCORE,...; a label outside "
        "it is an error.")
    num_labels: int = Field(
        default=1, description="Logits of the head: 1 (accepted for RAG-Retrieval scripts).")
    stop_on_collapse: bool = Field(
        default=True, description="Stop when every candidate gets the same score (loss stuck "
        "at the constant-score loss, e.g. ln(G)); --no-stop-on-collapse only warns.")
    dataloader_drop_last: Annotated[bool, Flags(valued=True)] = Field(
        default=False, description="Drop the last incomplete batch (HF-style: True/False).")
    save_on_epoch_end: int = Field(
        default=0, ge=0, le=1, description="1: checkpoint at the end of every epoch "
        "(RAG-Retrieval's flag; instead of --save-steps).")

    @field_validator("label_map", mode="before")
    @classmethod
    def _label_map(cls, v: Any) -> Any:
        """`3=1,2=0.75` (CLI) or a mapping with int or str keys (YAML, Python)."""
        if isinstance(v, str):
            return parse_label_map(v)
        if isinstance(v, dict):
            return {str(k).strip(): val for k, val in v.items()}
        return v

    @field_validator("label_map")
    @classmethod
    def _label_scores(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [f"{k}={s:g}" for k, s in v.items() if not 0.0 <= s <= 1.0]
        if bad:
            raise ValueError(f"targets are scores in 0..1 (sigmoid outputs): {', '.join(bad)}")
        if not v:
            raise ValueError("the label map is empty")
        return v

    @field_validator("num_labels")
    @classmethod
    def _one_logit(cls, v: int) -> int:
        if v != 1:
            raise ValueError("a reranker scores a (query, passage) pair with one logit; "
                             f"{v} labels would make a classifier, which neither "
                             "FlagEmbedding's nor RAG-Retrieval's rerankers are")
        return v

    @model_validator(mode="after")
    def _reranker_consistent(self) -> RerankerConfig:
        if self.save_on_epoch_end and self.save_steps:
            raise ConfigError("choose one of --save-steps and --save-on-epoch-end")
        return self

    def task_trainer_arguments(self, cuda: bool) -> dict[str, dict[str, Any]]:
        return {
            "dataloader_drop_last": {"dataloader_drop_last": self.dataloader_drop_last},
            "save_on_epoch_end": {"save_strategy": "epoch"} if self.save_on_epoch_end else {},
        }


#: Settings our own code consumes; the rest map to `TrainingArguments` (a test checks).
OWN_SETTINGS = SHARED_OWN_SETTINGS | {
    "loss", "train_group_size", "max_len", "label_map", "num_labels", "stop_on_collapse",
}


def pair_logits(model: Any, pairs: dict[str, Any]) -> Any:
    """One logit per tokenised (query, passage) pair: what the loss trains and the probe and
    every consumer (transformers, CrossEncoder) read."""
    return model(**pairs).logits.view(-1)


def _make_trainer_class() -> type:
    """The shared `Trainer` subclass with the cross-encoder's loss (built lazily)."""

    class RerankerTrainer(trainer_base()):  # type: ignore[misc]
        def __init__(self, *args: Any, loss_fn: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.loss_fn = loss_fn

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            logits = pair_logits(model, inputs["pairs"])
            loss = self.loss_fn(logits, inputs.get("targets"))
            return (loss, {"logits": logits}) if return_outputs else loss

    return RerankerTrainer


# -- data -------------------------------------------------------------------------------------
def load_reranker_data(cfg: RerankerConfig, say: Say) -> tuple[Any, list[str], int, list[str]]:
    """The dataset for `cfg.loss`, every text (for the vocabulary check), the rows read, and
    what building it changed (also said as notes).

    `group` needs train rows; the pointwise losses take train rows (pos 1, neg 0) and graded
    TSV (through the label map), mixed as the files come.
    """
    from embedarena.training.data import (
        GroupDataset,
        PairDataset,
        ScoredPair,
        graded_lines,
        is_graded_tsv,
        load_graded_pairs,
        load_train_files,
        pairs_from_examples,
    )

    graded = [p for p in cfg.train if is_graded_tsv(p)]
    rows = [p for p in cfg.train if not is_graded_tsv(p)]
    if cfg.loss == "group" and graded:
        raise ConfigError(f"--loss group trains on {{query, pos, neg}} JSONL; {graded[0]} is "
                          "graded TSV: train it with --loss mse (or bce)")
    if cfg.loss == "group":
        examples, notes = load_train_files(rows)
        for n in notes:
            say(n)
        ds = GroupDataset(examples, cfg.train_group_size, cfg.seed)
        for line in ds.stats.lines():
            say(line)
        texts = [ex.query for ex in examples] + [t for ex in examples for t in (*ex.pos,
                                                                                 *ex.neg)]
        return ds, list(dict.fromkeys(texts)), len(examples), ds.stats.lines()
    pairs: list[ScoredPair] = []
    n_rows = 0
    lines: list[str] = []
    if rows:
        examples, notes = load_train_files(rows)
        for n in notes:
            say(n)
        from_rows, stats = pairs_from_examples(examples)
        lines += stats.lines()
        pairs += from_rows
        n_rows += len(examples)
    for p in graded:
        got, report = load_graded_pairs(p, cfg.label_map)
        lines += graded_lines(report)
        pairs += got
        n_rows += report.loaded
    if len({x.target for x in pairs}) < 2:
        say(f"every training pair has the target {pairs[0].target:g}: the model can only "
            "learn to give every pair that score", "warning")
    for line in lines:
        say(line)
    texts = list(dict.fromkeys([x.query for x in pairs] + [x.passage for x in pairs]))
    return PairDataset(pairs), texts, n_rows, lines


def _probe_items(dataset: Any) -> list[dict[str, Any]]:
    """A few fixed groups from the training data: the first rows' groups (epoch 0), or for
    pairs the first queries with 2+ passages, as one group each."""
    from embedarena.training.data import GroupDataset

    if isinstance(dataset, GroupDataset):
        return [dataset[i] for i in range(min(PROBE_GROUPS, len(dataset)))]
    by_query: dict[str, list[str]] = {}
    for x in dataset.pairs:
        by_query.setdefault(x.query, []).append(x.passage)
        if sum(len(v) > 1 for v in by_query.values()) >= PROBE_GROUPS:
            break
    return [{"query": q, "passages": ps[:8]} for q, ps in by_query.items() if len(ps) > 1]


def _probe(dataset: Any, collator: Any) -> Any:
    from embedarena.training.health import Probe

    items = _probe_items(dataset)
    if not items:
        return None
    feats = collator([{"query": it["query"], "passages": it["passages"]} for it in items])
    return Probe(feats["pairs"], [len(it["passages"]) for it in items], pair_logits)


def _text_tokens(tok: Any, probe: Any) -> tuple[float, float]:
    """Per probe pair: mean text tokens (not special, not padding), and their [UNK] share."""
    ids = probe.features["input_ids"]
    special = set(tok.all_special_ids)
    text = [[i for i in row.tolist() if i not in special] for row in ids]
    total = sum(len(r) for r in text)
    unk = sum(r.count(tok.unk_token_id) for r in text) if tok.unk_token_id is not None else 0
    return total / max(len(text), 1), unk / total if total else 0.0


#: Below these, the inputs are a likely cause of a collapse (else they are reported as fine).
FEW_TEXT_TOKENS = 8
BLIND_UNKNOWN_SHARE = 0.05


def _causes(cfg: RerankerConfig, max_len: int, unknown_share: float,
            probe_text: tuple[float, float] | None) -> str:
    """The likely causes the numbers support, and the numbers of those they rule out."""
    causes = [f"the learning rate {cfg.learning_rate:g} is too high (scores saturate) or too "
              "low (nothing moves); rerankers usually train at 1e-5..6e-5"]
    fine: list[str] = []
    text = probe_text[0] if probe_text is not None else None
    unk = max(unknown_share, probe_text[1] if probe_text is not None else 0.0)
    if text is not None and text < FEW_TEXT_TOKENS:
        causes.append(f"the inputs carry (almost) no text: max_len {max_len} leaves "
                      f"{text:.1f} text tokens per (query, passage) pair on the probe")
    elif text is not None:
        fine.append(f"{text:.0f} text tokens per pair at max_len {max_len}")
    if unk > BLIND_UNKNOWN_SHARE:
        causes.append(f"the tokenizer is blind to the data: {unk:.0%} of the tokens are "
                      "[UNK]; pass --extend-vocab or pick a model for this language")
    else:
        fine.append(f"{unk:.0%} [UNK]")
    out = "Likely causes: " + "; ".join(causes)
    return out + (f" (the inputs look fine: {', '.join(fine)})" if fine else "")


def _collapse_message(found: tuple[int, str], cfg: RerankerConfig, max_len: int,
                      unknown_share: float, probe_text: tuple[float, float] | None) -> str:
    step, evidence = found
    stop = ("training stopped (--no-stop-on-collapse to go on)" if cfg.stop_on_collapse
            else "training goes on (--stop-on-collapse to stop)")
    return (f"training collapsed at step {step}: {evidence}. Every candidate gets the same "
            f"score, so the ranking is random; {stop}. "
            + _causes(cfg, max_len, unknown_share, probe_text))


def _stuck_message(found: tuple[int, str], cfg: RerankerConfig, max_len: int,
                   unknown_share: float, probe_text: tuple[float, float] | None) -> str:
    step, evidence = found
    return (f"step {step}: {evidence}: a slow start (a fresh head begins exactly there) or the "
            "beginning of a collapse; training goes on, and stops if the scores turn "
            "identical. " + _causes(cfg, max_len, unknown_share, probe_text))


# -- the model --------------------------------------------------------------------------------
def load_cross_encoder(model_dir: Path, say: Say) -> tuple[Any, Any, str]:
    """Tokenizer, 1-logit sequence-classification model, and how its head came about.

    A dir whose architecture is `*ForSequenceClassification` keeps its head (it must have
    one logit); any other encoder gets a fresh head, initialised from the seed set before.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
        archs = list(getattr(config, "architectures", None) or [])
        is_reranker = any(a.endswith("ForSequenceClassification") for a in archs)
        if is_reranker and config.num_labels != 1:
            raise ConfigError(f"{model_dir} is a classifier with {config.num_labels} labels; "
                              "a reranker has one logit (start from its encoder instead)")
        tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        model, info = AutoModelForSequenceClassification.from_pretrained(
            model_dir, num_labels=1, local_files_only=True, output_loading_info=True)
    except (OSError, ValueError) as e:
        raise EmbedderError(f"cannot load {model_dir} as a cross-encoder: {e}") from None
    if is_reranker:
        head = f"kept ({archs[0]}, one logit)"
    else:
        fresh = sorted(info.get("missing_keys") or [])
        head = (f"added: a fresh 1-logit head on {archs[0] if archs else config.model_type} "
                f"({', '.join(fresh) or 'no new weights'})")
    say(f"classification head {head}")
    return tok, model, head


def _effective_max_len(tok: Any, model: Any, max_len: int, say: Say) -> int:
    """`max_len`, capped at what the tokenizer and the position embeddings allow."""
    limits = [n for n in (getattr(tok, "model_max_length", None),
                          getattr(model.config, "max_position_embeddings", None))
              if isinstance(n, int) and 0 < n < 100_000]
    cap = min(limits) if limits else max_len
    if max_len > cap:
        say(f"max_len {max_len} is more than this model reads: using {cap}")
        return cap
    return max_len


def train_reranker(cfg: RerankerConfig, log: Callable[[str], None] | None = None
                   ) -> TrainResult:
    """Fine-tune `cfg.model` as a cross-encoder on `cfg.train`; the final model lands in
    `cfg.output_dir`. Notes go to `log` when given, else to the current `embedarena.progress`
    (main process only); a collapsed run raises `CollapsedTrainingError` with
    `stop_on_collapse` (no final model is written), else it is in `TrainResult.health`.
    """
    require_training_stack(cfg)
    import transformers

    from embedarena import progress
    from embedarena.embedders.hf import resolve_model_dir
    from embedarena.embedders.st_format import read_layout
    from embedarena.training.data import PairCollator
    from embedarena.training.health import (
        CollapseDetector,
        CollapsedTrainingError,
        collapse_callback,
    )
    from embedarena.training.losses import GroupCELoss, PointwiseBCELoss, PointwiseMSELoss

    reporter = progress.current()
    say = notifier(log, reporter)
    base = resolve_model_dir(cfg.model)
    out = Path(cfg.output_dir)
    dataset, texts, n_rows, data_lines = load_reranker_data(cfg, say)
    transformers.set_seed(cfg.seed)  # a fresh head starts the same for the same seed
    tok, model, head = load_cross_encoder(read_layout(base).transformer_dir, say)
    vocab = check_vocab(model, tok, texts, cfg, say)
    tok = vocab.tokenizer
    max_len = _effective_max_len(tok, model, cfg.max_len, say)
    tok.model_max_length = max_len  # consumers truncate as training did
    model.config.sentence_transformers = {"activation_fn": SIGMOID}
    collator = PairCollator(tok, max_len)
    loss_fn = (GroupCELoss(cfg.train_group_size) if cfg.loss == "group"
               else PointwiseBCELoss() if cfg.loss == "bce" else PointwiseMSELoss())
    targets = None if cfg.loss == "group" else dataset.targets()
    detector = CollapseDetector(loss_fn.constant_loss(targets))
    # DeepSpeed ZeRO-3 and FSDP (accelerate launch) shard the weights: a probe forward
    # outside the engine would fail, so there only the loss rule runs.
    sharded = cfg.deepspeed is not None or os.environ.get(
        "ACCELERATE_USE_FSDP", "").lower() in ("1", "true")
    probe = None if sharded else _probe(dataset, collator)
    probe_text = _text_tokens(tok, probe) if probe is not None else None
    health: list[str] = []

    def warn(found: tuple[int, str]) -> None:
        msg = _collapse_message(found, cfg, max_len, vocab.unknown_share, probe_text)
        health.append(msg)
        say(msg, "warning")

    def stuck(found: tuple[int, str]) -> None:
        msg = _stuck_message(found, cfg, max_len, vocab.unknown_share, probe_text)
        health.append(msg)
        say(msg, "warning")

    meta = {**base_meta(base, cfg, vocab, n_rows), "kind": "cross-encoder reranker",
            "loss": cfg.loss, "head": head, "max_len": max_len,
            "label_map": cfg.label_map if cfg.loss != "group" else None,
            "score": "one logit per (query, passage) pair; CrossEncoder.predict applies "
                     "sigmoid", "health": health}
    trainer = _make_trainer_class()(
        model=model, args=training_arguments(cfg), train_dataset=dataset,
        data_collator=collator, processing_class=tok, write_files=lambda d: write_meta(d, meta),
        loss_fn=loss_fn)
    result = fit(trainer, cfg, reporter,
                 oom_hint="lower --batch-size, --train-group-size or --max-len, or use "
                 "--gradient-checkpointing",
                 callbacks=(collapse_callback(detector, probe, warn=warn,
                                              stop=cfg.stop_on_collapse, note_stuck=stuck),))
    if detector.verdict is not None and cfg.stop_on_collapse:
        raise CollapsedTrainingError(health[-1])
    losses = save_final(trainer, out)
    return TrainResult(out, trainer.state.global_step, getattr(result, "training_loss", None),
                       losses, vocab.before, vocab.added, data_lines, cfg.resume_from_checkpoint,
                       health)
