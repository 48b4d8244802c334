"""`embedarena mine`: hard-negative mining (FlagEmbedding hn_mine-compatible, label-aware)."""

from __future__ import annotations

from pathlib import Path

import typer

from embedarena.cli.console import console, err_console


def mine_cmd(
    input: Path = typer.Argument(..., exists=True, dir_okay=False,
                                 help="Train JSONL {query, pos, neg} (FlagEmbedding format)."),
    output: Path = typer.Argument(..., dir_okay=False, help="Output JSONL, same format."),
    model: str = typer.Option("minilm", "--model", "-m", help="Mining model: inline spec "
                              "(minilm, hf:DIR, azure:DEPLOYMENT, bm25, ...)."),
    range_for_sampling: str = typer.Option("10-210", "--range-for-sampling", "--range",
                                           help="Sample negatives from hits ranked a-b "
                                           "(0-based, end exclusive), as hn_mine does."),
    negative_number: int = typer.Option(15, "--negative-number", "-n",
                                        help="Negatives per row."),
    candidate_pool: Path | None = typer.Option(None, "--candidate-pool", exists=True,
                                               dir_okay=False, help="Pool: JSONL {text} or "
                                               "any corpus file (label.json, CSV, XLSX); "
                                               "default: every pos/neg of the input."),
    query_instruction: str = typer.Option("", "--query-instruction",
                                          "--query-instruction-for-retrieval",
                                          help="Prepended to each query before search."),
    margin: float | None = typer.Option(None, "--margin", help="Drop candidates scoring "
                                        "above (weakest positive's score - margin)."),
    backend: str = typer.Option("auto", "--backend", help="auto | faiss | torch | es "
                                "(es: the model's Elasticsearch index over the pool)."),
    cpu: bool = typer.Option(False, "--cpu", help="Search on the CPU even with a GPU."),
    seed: int = typer.Option(42, help="Sampling seed."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not use the embedding cache."),
) -> None:
    """Mine hard negatives for a train JSONL with any embedder or BM25.

    A negative is never a gold label of its query: every `pos` of every row with the same
    query text is excluded (FlagEmbedding's hn_mine only excludes the row's own pos). Every
    row comes out (same order), and the counts say what was dropped and why.

    Example: embedarena mine train.jsonl train.minedHN.jsonl --model minilm --range 2-200 -n 15
    """
    from rich.table import Table

    from embedarena.arena import mine_file
    from embedarena.cli.progress import CliProgress
    from embedarena.training.mining import MineConfig, parse_range

    cfg = MineConfig(model=model, range_for_sampling=parse_range(range_for_sampling),
                     negative_number=negative_number,
                     candidate_pool=str(candidate_pool) if candidate_pool else None,
                     query_instruction=query_instruction, seed=seed, margin=margin,
                     backend=backend,  # type: ignore[arg-type]
                     use_gpu=not cpu, cache=not no_cache)
    from rich.markup import escape

    err_console.print(f"mining {escape(str(input))} with {escape(model)} …")
    with CliProgress() as progress:
        stats = mine_file(input, output, cfg, progress=progress)
    table = Table(title=f"mined {escape(str(output))}", show_header=False)
    for k, v in stats.table():
        table.add_row(k, v)
    console.print(table)
    for note in stats.notes:
        err_console.print(f"input: {escape(note)}")
    if stats.rows_without_negatives:
        err_console.print(f"[yellow]warning:[/] {stats.rows_without_negatives} rows got no "
                          "negative (widen --range-for-sampling or use a larger pool)")


def register(app: typer.Typer) -> None:
    app.command("mine")(mine_cmd)
