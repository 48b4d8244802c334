"""`embedarena eval`: run a query file against a model's index and write a run directory."""

from __future__ import annotations

from pathlib import Path

import typer

from embedarena.cli.console import console, err_console
from embedarena.errors import ConfigError


def parse_ks(ks: str) -> list[int]:
    """`--k 1,2,5` → [1, 2, 5] (sorted, unique, positive), or a clear error."""
    try:
        cut = sorted({int(x) for x in ks.split(",") if x.strip()})
    except ValueError:
        raise ConfigError(f"--k takes comma-separated integers, got {ks!r}") from None
    if not cut or cut[0] < 1:
        raise ConfigError("--k needs positive cutoffs, e.g. --k 1,2,5")
    return cut


def metrics_from_ks(ks: str, extra: str | None) -> list[str]:
    """`--k 1,2,5` → precise/hit/recall at each k, plus mrr/map/ndcg at the largest k."""
    cut = parse_ks(ks)
    names = [f"{m}@{k}" for m in ("precise", "hit", "recall") for k in cut]
    top = cut[-1]
    names += [f"mrr@{top}", f"map@{top}", f"ndcg@{top}"]
    if extra:
        names += [m.strip() for m in extra.split(",") if m.strip()]
    return names


def eval_cmd(
    model: list[str] = typer.Option(..., "--model", "-m", help="Inline model spec (hf:DIR, "
                                    "minilm, azure:DEPLOYMENT, bm25, ...). Repeatable."),
    queries: Path = typer.Option(..., "--queries", "-q", exists=True, dir_okay=False,
                                 help="Query file: test JSONL {query, pos}, train JSONL, "
                                 "T2Reranking {query, positive}, or TSV query/doc/label."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory to write."),
    ks: str = typer.Option("1,2,5", "--k", help="Cutoffs, e.g. 1,2,5."),
    metrics: str | None = typer.Option(None, help="Extra metrics, e.g. ndcg@10,map@100."),
    corpus: Path | None = typer.Option(None, "--corpus", "-c", exists=True, dir_okay=False,
                                       help="Corpus: builds the index if missing and checks "
                                       "that gold labels are in it."),
    prefix: str = typer.Option("embedarena-", help="Index/alias name prefix."),
    num_candidates: int = typer.Option(100, help="kNN candidates per shard (HNSW)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not use the embedding cache."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Count and skip bad records "
                                  "(malformed lines, wrong types) instead of stopping at the "
                                  "first one."),
) -> None:
    """Evaluate models on a query file: batched encoding, _msearch, precise@k and friends.

    Writes RUN_DIR/run.jsonl (query, gold, retrieved, scores), run.trec, metrics.json and
    meta.json (one sub-directory per model when several are given).

    Example: embedarena eval --model minilm --queries test.jsonl --k 1,2,5 --out runs/minilm
    """
    from embedarena.arena import inline_experiment, run_experiment
    from embedarena.cli.progress import CliProgress
    from embedarena.indexer.build import alias_for

    exp = inline_experiment(
        model, name="eval", corpus={"path": corpus} if corpus else None,
        queries=[{"path": queries}], metrics=metrics_from_ks(ks, metrics),
        index={"prefix": prefix, "num_candidates": num_candidates}, cache=not no_cache,
        out=out)
    single = len(exp.models) == 1

    def place(name: str, qs: object) -> Path:
        return out if single else out / alias_for(name, prefix).removeprefix(prefix)

    with CliProgress() as progress:
        result = run_experiment(exp, out, progress=progress, skip_bad=skip_bad, run_dir=place,
                                save_comparison=False, report=False)
    for where in result.run_dirs.values():
        err_console.print(f"wrote {where}")
    console.print(result.comparison.to_rich_table())


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
