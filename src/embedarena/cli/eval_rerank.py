"""`embedarena eval-rerank`: C-MTEB-style reranking evaluation (MAP, MRR@10) of embedders and
rerankers on `{query, positive, negative}` data."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from embedarena.cli.console import console, err_console

if TYPE_CHECKING:
    from embedarena.evaluation.reranking import RerankingResult


def _num(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.4f}"


def eval_rerank_cmd(
    data: Path = typer.Argument(..., exists=True, dir_okay=False, help="Reranking JSONL: "
                                "T2Reranking {query, positive, negative} or {query, pos, neg}."),
    model: list[str] = typer.Option(..., "--model", "-m", help="Embedder (minilm, hf:DIR, "
                                    "azure:...: cosine of query and candidate vectors) or "
                                    "reranker (reranker:DIR: cross-encoder score). Repeatable."),
    split: str | None = typer.Option(None, help="Evaluate the test part of the seed's split, "
                                     "e.g. test_size=0.1,seed=1 (HF datasets' "
                                     "train_test_split); with --out, writes train.jsonl "
                                     "(FlagEmbedding {query, pos, neg}) and test.jsonl."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Directory for rerank.json, "
                                    "rerank.per_sample.jsonl and meta.json (one sub-directory "
                                    "per model when several are given)."),
    mrr_at: int = typer.Option(10, "--mrr-at", min=1, help="MRR cutoff (mteb: 10)."),
    ndcg_at: int = typer.Option(10, "--ndcg-at", min=1, help="nDCG cutoff."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not use the embedding/score "
                                  "cache."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Count and skip bad records "
                                  "instead of stopping at the first one."),
) -> None:
    """Rerank each query's own candidates and report MAP and MRR@10 exactly as mteb 1.1.1
    (seed 000), plus nDCG@10, with the number of queries whose candidates tie.

    Ties are broken by a stable sort (positives first: optimistic); AP treats a tie as one
    threshold, as scikit-learn does. A negative that is also a positive is dropped and counted.

    Example: embedarena eval-rerank T2Reranking.jsonl --model minilm --split
    test_size=0.1,seed=1 --out runs/t2rerank
    """
    from embedarena.cli.progress import CliProgress
    from embedarena.evaluation.reranking import evaluate_file, parse_model
    from embedarena.names import slug
    from embedarena.progress import using

    specs = [parse_model(m) for m in model]  # every --model checked before any work
    results: list[RerankingResult] = []
    with CliProgress() as progress, using(progress):
        for spec in specs:
            where = out if out is None or len(specs) == 1 else out / slug(spec.name)
            results.append(evaluate_file(data, spec, split=split, out_dir=where, split_dir=out,
                                         cache=not no_cache, skip_bad=skip_bad, mrr_at=mrr_at,
                                         ndcg_at=ndcg_at))
    first = results[0]
    report = first.load_report
    if report is not None:
        err_console.print(f"{escape(str(data))}: {escape(report.format)}; "
                          f"{escape(report.summary())}", highlight=False)
    split_meta = first.meta.get("split")
    if split_meta:
        line = (f"split {escape(split_meta['spec'])}: {split_meta['n_test']} test, "
                f"{split_meta['n_train']} train samples")
        if "train_file" in split_meta:
            line += (f"; wrote {escape(split_meta['train_file'])} ({split_meta['train_written']}"
                     f" with a positive and a negative) and {escape(split_meta['test_file'])}")
        err_console.print(line, highlight=False)
    n_ov, n_dropped = first.overlaps
    if n_ov:
        err_console.print(f"{n_ov} queries list a passage as both positive and negative: "
                          f"{n_dropped} negatives dropped", highlight=False)
    console.print(_table(results))
    if out is not None:
        err_console.print(f"wrote {escape(str(out))}", highlight=False)


def _table(rows: list[RerankingResult]) -> Table:
    first = rows[0]
    table = Table(title=f"reranking: {escape(first.data)}", title_justify="left",
                  caption="MAP and MRR as mteb 1.1.1 (seed 000); tied = queries with tied "
                  "candidate scores, pos=neg = a positive ties a negative (ranked positives "
                  "first: optimistic; AP counts the tie as one threshold)",
                  caption_justify="left")
    for col in ("model", "queries", "evaluated", "skipped", "MAP", f"MRR@{first.mrr_at}",
                f"nDCG@{first.ndcg_at}", "tied", "pos=neg"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in rows:
        m = r.means
        skipped = ", ".join(f"{v} {k}" for k, v in sorted(r.skipped.items())) or "0"
        table.add_row(escape(r.model), str(len(r.samples)), str(len(r.evaluated)),
                      escape(skipped), _num(m["map"]), _num(m[f"mrr@{r.mrr_at}"]),
                      _num(m[f"ndcg@{r.ndcg_at}"]), str(r.n_tied), str(r.n_mixed_ties))
    return table


def register(app: typer.Typer) -> None:
    app.command("eval-rerank")(eval_rerank_cmd)
