"""`embedarena train ...`: fine-tuning commands (`train embedder`)."""

from __future__ import annotations

from pathlib import Path

import typer

from embedarena.cli.console import console, err_console

app = typer.Typer(help="Fine-tune models on your data (CPU, one GPU, or torchrun/accelerate "
                  "for several).", no_args_is_help=True)


@app.command("embedder")
def embedder_cmd(
    model: str = typer.Option(..., "--model", "-m", help="Base encoder: a local HF/"
                              "sentence-transformers dir, or `minilm`."),
    train: list[Path] = typer.Option(..., "--train", "-t", exists=True, dir_okay=False,
                                     help="Train JSONL {query, pos, neg}. Repeatable."),
    output: Path = typer.Option(..., "--output", "-o", help="Output model dir."),
    epochs: float = typer.Option(1.0, help="Epochs."),
    max_steps: int = typer.Option(-1, help="Stop after this many optimizer steps (-1: by "
                                  "epochs)."),
    batch_size: int = typer.Option(16, "--batch-size", "-b", help="Queries per device per step."),
    lr: float = typer.Option(2e-5, "--lr", "--learning-rate", help="Learning rate."),
    temperature: float = typer.Option(0.02, help="InfoNCE temperature."),
    train_group_size: int = typer.Option(8, help="1 positive + n-1 negatives per query."),
    in_batch_negatives: bool = typer.Option(True, "--in-batch-negatives/--no-in-batch-negatives",
                                            help="Use other queries' passages as negatives."),
    cross_device_negatives: bool = typer.Option(
        True, "--cross-device-negatives/--no-cross-device-negatives",
        help="Under torchrun, gather passages from every process (with gradient)."),
    mask_false_negatives: bool = typer.Option(
        True, "--mask-false-negatives/--no-mask-false-negatives",
        help="Mask in-batch passages that are also gold for the query."),
    query_max_len: int = typer.Option(64, help="Query max tokens."),
    passage_max_len: int = typer.Option(256, help="Passage max tokens."),
    query_instruction: str = typer.Option("", "--query-instruction",
                                          "--query-instruction-for-retrieval",
                                          help="Prepended to every query (BGE-style)."),
    pooling: str | None = typer.Option(None, help="cls | mean (default: the model dir's)."),
    normalize: bool = typer.Option(True, "--normalize/--no-normalize",
                                   help="Unit-length embeddings."),
    warmup_ratio: float = typer.Option(0.1, help="Warm-up share of the steps."),
    weight_decay: float = typer.Option(0.01, help="AdamW weight decay."),
    fp16: bool = typer.Option(False, "--fp16", help="Mixed precision fp16 (GPU)."),
    bf16: bool = typer.Option(False, "--bf16", help="Mixed precision bf16 (Ampere+ GPU)."),
    gradient_checkpointing: bool = typer.Option(False, "--gradient-checkpointing"),
    grad_accum: int = typer.Option(1, "--gradient-accumulation-steps", help="Accumulate "
                                   "gradients over this many steps."),
    cache_chunk_size: int | None = typer.Option(None, "--cache-chunk-size", help="Cached "
                                                "(GradCache) loss: encode in chunks of this "
                                                "size, so a big batch fits a small GPU."),
    deepspeed: Path | None = typer.Option(None, "--deepspeed", exists=True, dir_okay=False,
                                          help="DeepSpeed config JSON (passed to the Trainer)."),
    save_steps: int | None = typer.Option(None, help="Checkpoint every N steps."),
    save_total_limit: int = typer.Option(2, help="Keep at most N checkpoints."),
    resume: str | None = typer.Option(None, "--resume", "--resume-from-checkpoint",
                                      help="A checkpoint dir to continue from."),
    seed: int = typer.Option(42, help="Seed (data order, sampling, init of new tokens)."),
    logging_steps: int = typer.Option(10, help="Log the loss every N steps."),
    report_to: str = typer.Option("tensorboard", help="tensorboard | wandb | none "
                                  "(comma-separated)."),
    extend_vocab: bool = typer.Option(False, "--extend-vocab", help="Add characters/words the "
                                      "tokenizer maps to [UNK] as new tokens."),
    vocab_min_count: int = typer.Option(1, help="With --extend-vocab: add pieces seen at "
                                        "least this often."),
    drop_dense: bool = typer.Option(False, "--drop-dense", help="Train a model with Dense "
                                    "modules as a bare transformer (FlagEmbedding does)."),
    cpu: bool = typer.Option(False, "--cpu", help="Train on the CPU even with a GPU."),
) -> None:
    """Contrastive fine-tuning (InfoNCE) of a local Hugging Face encoder.

    The output dir is a standard HF model dir with sentence-transformers files, loadable by
    `hf:DIR`, SentenceTransformer(DIR) and FlagEmbedding. Several GPUs:
    `torchrun --nproc_per_node 4 -m embedarena train embedder ...`, or `accelerate launch`.

    Example: embedarena train embedder -m minilm -t train.minedHN.jsonl -o models/minilm-ft
    --epochs 2 --batch-size 32 --train-group-size 4
    """
    from embedarena.training.embedder import TrainConfig, train_embedder

    cfg = TrainConfig(
        model=model, train=[str(p) for p in train], output_dir=str(output),
        temperature=temperature, in_batch_negatives=in_batch_negatives,
        cross_device_negatives=cross_device_negatives,
        mask_false_negatives=mask_false_negatives, train_group_size=train_group_size,
        query_max_len=query_max_len, passage_max_len=passage_max_len,
        query_instruction=query_instruction, pooling=pooling, normalize=normalize,
        learning_rate=lr, epochs=epochs, max_steps=max_steps, batch_size=batch_size,
        warmup_ratio=warmup_ratio, weight_decay=weight_decay, fp16=fp16, bf16=bf16,
        gradient_checkpointing=gradient_checkpointing, gradient_accumulation_steps=grad_accum,
        cache_chunk_size=cache_chunk_size, deepspeed=str(deepspeed) if deepspeed else None,
        save_steps=save_steps, save_total_limit=save_total_limit, resume_from_checkpoint=resume,
        seed=seed, logging_steps=logging_steps,
        report_to=[r.strip() for r in report_to.split(",") if r.strip()],
        extend_vocab=extend_vocab, vocab_min_count=vocab_min_count, drop_dense=drop_dense,
        device="cpu" if cpu else None)
    res = train_embedder(cfg, console=err_console, log=err_console.print)
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        last = f", last logged loss {res.losses[-1][1]:.4f}" if res.losses else ""
        console.print(f"trained {res.global_step} steps{last}; model in {res.output_dir}")


def register(app_: typer.Typer) -> None:
    app_.add_typer(app, name="train")
