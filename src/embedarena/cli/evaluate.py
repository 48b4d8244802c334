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
    from embedarena import pipeline as pl
    from embedarena.evaluation.compare import Comparison
    from embedarena.evaluation.metrics import evaluate, parse_metrics
    from embedarena.experiment import CorpusSource, QuerySource
    from embedarena.indexer.build import IndexOptions
    from embedarena.indexer.es import connect, server_version

    names = metrics_from_ks(ks, metrics)
    specs = parse_metrics(names)
    depth = pl.depth_for(names, None)
    qs = pl.load_query_sources([QuerySource(path=queries, skip_bad=skip_bad)])[0]
    docs = (pl.load_corpus_source(CorpusSource(path=corpus, skip_bad=skip_bad)) if corpus
            else None)
    if docs is not None:
        missing = pl.gold_coverage(docs, qs)
        if missing:
            err_console.print(f"[yellow]warning:[/] {len(missing)} of {len(qs)} queries have gold "
                              f"labels that are not in the corpus (e.g. query {next(iter(missing))}"
                              f": {next(iter(missing.values()))[:3]}); they cannot be found")
    client, target = connect()
    es_version = server_version(client, target)
    comparison = Comparison()
    with pl.progress_bar() as progress:
        for raw in model:
            handle = pl.prepare_model(raw, prefix, cache=not no_cache)
            if docs is not None:
                pl.build_index(client, target, handle, docs, IndexOptions(), progress=progress)
            run = pl.evaluate_model(client, target, handle, qs, depth, num_candidates,
                                    corpus_sha=docs.sha256() if docs else None,
                                    progress=progress)
            run.meta.update(pl.run_metadata(target, es_version, {
                "queries": str(queries), "queries_sha256": qs.sha256(),
                "cache": _cache_stats(handle)}))
            result = evaluate(run, specs)
            run_dir = out if len(model) == 1 else out / handle.alias.removeprefix(prefix)
            run.save(run_dir)
            result.save(run_dir / "metrics.json")
            comparison.add(handle.name, qs.name, result, ann=run.meta.get("ann_check"))
            err_console.print(f"wrote {run_dir}")
    console.print(comparison.to_rich_table())


def _cache_stats(handle: object) -> dict[str, int]:
    emb = getattr(handle, "embedder", None)
    stats = getattr(emb, "stats", None)
    return dict(stats) if isinstance(stats, dict) else {}


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
