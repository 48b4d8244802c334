"""`embedarena ann-check RUN_OR_EXPERIMENT`: what HNSW's approximation costs, in metrics.

Each saved dense HNSW run is set beside the exact search (faiss Flat where installed) over the
index's own vectors on the same query vectors: the top-k overlap and, for every metric of the
run, its value under HNSW, exactly, and the difference.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from embedarena.cli.console import console, err_console
from embedarena.errors import DataError


def ann_check_cmd(
    target: Annotated[Path, typer.Argument(
        metavar="RUN_OR_EXPERIMENT",
        help="A run directory, a folder of them (an experiment's output), or an experiment "
             "file (its `out` folder is read: run the experiment first).")],
    metrics: Annotated[str | None, typer.Option(
        "--metrics", "-m", help="Metrics to compare, e.g. 'recall@10,mrr@10'. Default: what "
        "each run's metrics.json holds.")] = None,
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Also write every check (overlap, metrics, where) to this file.")] = None,
    no_cache: Annotated[bool, typer.Option(
        "--no-cache", help="Encode the queries again instead of reading the embedding "
        "cache.")] = False,
) -> None:
    """Compare HNSW runs with exact search on the same vectors: overlap@k and metric deltas.

    For each saved dense HNSW run: the index's vectors are read back from Elasticsearch, the
    run's queries encoded again through the embedding cache, and searched exactly with the
    search `--backend faiss` uses for flat (faiss Flat; torch or numpy without faiss). Printed:
    overlap@k (share of the exact top k the HNSW run returned), and each metric under HNSW,
    exactly, and Δ = exact − HNSW (what the approximation costs).

    Runs on exact indexes (flat), BM25, hybrids and faiss runs are listed as skipped (faiss
    approximate runs carry their own check in meta.json).

    Example: embedarena ann-check runs/quickstart --metrics recall@10,ndcg@10
    """
    from rich.markup import escape
    from rich.table import Table

    from embedarena.cli.progress import CliProgress
    from embedarena.evaluation.compare import find_run_dirs
    from embedarena.evaluation.runner import check_saved_runs
    from embedarena.indexer.es import connect
    from embedarena.progress import using

    folder = target
    if target.is_file():
        from embedarena.experiment import load_experiment

        exp = load_experiment(target)
        if exp.out is None or not exp.out.is_dir():
            raise DataError(target, f"no runs at {exp.out}: run the experiment first "
                            f"(embedarena run {target})")
        folder = exp.out
    dirs = find_run_dirs([folder])
    with CliProgress() as progress, using(progress):
        checks, skipped = check_saved_runs(dirs, connect, metrics, cache=not no_cache)
    for d, why in skipped:
        err_console.print(f"skipped {escape(str(d))}: {escape(why)}", highlight=False)
    if not checks:
        err_console.print("no HNSW runs to check")
    else:
        overlap = Table(title="HNSW runs vs exact search on the same vectors")
        for col in ("query set", "model", "index", "k", "overlap@k", "min", "queries < 1",
                    "exact on"):
            overlap.add_column(col, justify="right" if col in ("k", "overlap@k", "min",
                                                                "queries < 1") else "left")
        deltas = Table(title="What the approximation costs (Δ = exact − HNSW)")
        for col in ("query set", "model", "metric", "hnsw", "exact", "Δ"):
            deltas.add_column(col, justify="left" if col in ("query set", "model", "metric")
                              else "right")
        for c in checks:
            ov = c.overlap
            overlap.add_row(*map(escape, (
                c.query_set, c.model, f"{c.index_type}, num_candidates {c.num_candidates}",
                str(c.k), f"{ov['overlap']:.4f}", f"{ov['min']:.3f}",
                f"{ov['queries_below_1']}/{ov['queries']}", c.exact)))
            for m, (a, e) in c.metrics.items():
                deltas.add_row(*map(escape, (c.query_set, c.model, m, f"{a:.4f}", f"{e:.4f}",
                                             f"{c.delta(m):+.4f}")))
        console.print(overlap)
        console.print(deltas)
    if json_out is not None:
        try:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps({
                "checks": [c.to_json() for c in checks],
                "skipped": [{"run_dir": str(d), "reason": why} for d, why in skipped]},
                ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        except OSError as e:
            raise DataError(json_out, f"cannot write: {e.strerror or e}") from e
        err_console.print(f"wrote {escape(str(json_out))}")


def register(app: typer.Typer) -> None:
    app.command("ann-check")(ann_check_cmd)
