"""`embedarena compare RUN_DIR...`: the comparison table of saved runs, without searching again."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from embedarena.cli.console import console, err_console
from embedarena.evaluation.compare import find_run_dirs


def _labels(keys: list[tuple[str, str, Path]]) -> list[str]:
    """Model labels for the table: the run's model name, plus its folder where two runs of the
    same model on the same query set would otherwise share a row."""
    def clashes(labels: list[str]) -> set[tuple[str, str]]:
        seen: dict[tuple[str, str], int] = {}
        for lab, (_, qs, _) in zip(labels, keys, strict=True):
            seen[(lab, qs)] = seen.get((lab, qs), 0) + 1
        return {k for k, n in seen.items() if n > 1}

    labels = [m for m, _, _ in keys]
    for attempt in (lambda m, d: f"{m} [{d.name}]", lambda m, d: f"{m} [{d}]"):
        dup = clashes(labels)
        if not dup:
            break
        labels = [attempt(m, d) if (lab, qs) in dup else lab
                  for lab, (m, qs, d) in zip(labels, keys, strict=True)]
    return labels


def compare_cmd(
    run_dirs: Annotated[list[Path], typer.Argument(
        metavar="RUN_DIR",
        help="Run directories (run.jsonl + meta.json, as eval/run write them), or folders "
             "to search for them.")],
    metrics: Annotated[str | None, typer.Option(
        "--metrics", "-m",
        help="Metrics to show, e.g. 'precise@1,2,5,mrr@10' (a bare number repeats the "
             "previous metric). Default: what each run's metrics.json holds.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Also write comparison.md, .csv and .json here.")] = None,
    columns: Annotated[str | None, typer.Option(
        "--columns", "-c",
        help="Cost and latency columns after the metrics, from each run's meta.json: "
             "embed_ms, embed_p95_ms, embed_batch_ms, embed_batch_p95_ms, search_ms, "
             "search_p95_ms, search_batch_ms, search_batch_p95_ms, index_mb, "
             "bytes_per_vector, tokens, price, cost_usd, or the groups latency, size, "
             "cost.")] = None,
    allow_mixed: Annotated[bool, typer.Option(
        "--allow-mixed", help="Show runs of one query set made from different corpora or "
        "query files (marked with their inputs' hashes) instead of refusing.")] = False,
) -> None:
    """Compare saved runs side by side: models × metrics, one table per query set.

    precise@k (seed 004): a query is right only if every gold label is in the top k.

    precision@k: the usual share of the top k that is relevant. Not the same thing.

    Metrics: precise, hit, recall, precision (@k, shown in %); mrr, map, ndcg (@k or whole list).

    Runs of one query set made from different corpora or query files are refused (see
    --allow-mixed).

    Example: embedarena compare runs/bge runs/bge-ft --metrics precise@1,2,5 --out report

    Example: embedarena compare runs/exp1 -m precise@1,5 --columns latency,size,cost
    """
    from embedarena.evaluation.compare import (
        Comparison,
        describe_mixed,
        load_run_dir,
        mixed_inputs,
        parse_columns,
        refuse_mixed,
    )
    from embedarena.evaluation.metrics import parse_metrics

    specs = parse_metrics(metrics) if metrics is not None else None
    extra = parse_columns(columns) if columns else []
    dirs = find_run_dirs(run_dirs)
    loaded = [(d, *load_run_dir(d, specs)) for d in dirs]
    labels = _labels([(run.model, run.query_set, d) for d, run, _ in loaded])
    marks = mixed_inputs([(lab, run.query_set, run.meta)
                          for lab, (_, run, _) in zip(labels, loaded, strict=True)])
    if not allow_mixed:
        refuse_mixed(marks)
    for line in describe_mixed(marks):
        err_console.print(f"warning: {line}", highlight=False, markup=False)
    labels = [f"{lab} [{', '.join(marks[(lab, run.query_set)])}]"
              if (lab, run.query_set) in marks else lab
              for lab, (_, run, _) in zip(labels, loaded, strict=True)]
    comparison = Comparison(extra=extra)
    # table titles say how many queries were scored and how many had no relevant gold
    for label, (_, run, result) in zip(labels, loaded, strict=True):
        comparison.add(label, run.query_set, result, ann=run.meta.get("ann_check"),
                       meta=run.meta)
    console.print(comparison.to_rich_table())
    if out is not None:
        for p in comparison.save(out):
            err_console.print(f"wrote {p}")


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_cmd)
