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
    ks: str = typer.Option("1,2,5", "--k", help="Cutoffs, e.g. 1,2,5: precise, hit and "
                           "recall at each, mrr/map/ndcg at the largest."),
    metrics: str | None = typer.Option(None, help="Extra metrics, e.g. ndcg@10,map@100. The "
                                       "three \"Recall@k\"s: recall@k (share of the gold "
                                       "found), hit@k (any gold found), r_cap@k (gold found / "
                                       "min(k, gold))."),
    corpus: Path | None = typer.Option(None, "--corpus", "-c", exists=True, dir_okay=False,
                                       help="Corpus: builds the index if missing and checks "
                                       "that gold labels are in it."),
    prefix: str = typer.Option("embedarena-", help="Index/alias name prefix."),
    num_candidates: int = typer.Option(100, help="kNN candidates per shard (HNSW; faiss "
                                       "hnsw: efSearch)."),
    backend: str = typer.Option("elasticsearch", "--backend", help="Where embedder rows "
                                "search: elasticsearch (an index per model on the node) or "
                                "faiss (in process, no node needed; needs --corpus; bm25 "
                                "models still need a node; faiss-gpu is used for flat/ivf "
                                "when installed and a GPU is there)."),
    index_type: str | None = typer.Option(None, "--index-type", help="elasticsearch: hnsw "
                                          "(default), int8_hnsw, bbq_hnsw, flat, int8_flat, "
                                          "bbq_flat, bbq_disk (9.2+); faiss: flat "
                                          "(default, exact), hnsw, ivf."),
    m: int | None = typer.Option(None, "--m", help="HNSW graph degree (hnsw types)."),
    ef_construction: int | None = typer.Option(None, "--ef-construction",
                                               help="HNSW build candidates (hnsw types)."),
    nlist: int | None = typer.Option(None, "--nlist", help="faiss ivf: inverted lists "
                                     "(default about 4·√docs)."),
    nprobe: int | None = typer.Option(None, "--nprobe", help="faiss ivf: lists searched per "
                                      "query (default 10)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not use the embedding cache."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Count and skip bad records "
                                  "(malformed lines, wrong types) instead of stopping at the "
                                  "first one."),
    encoding: str | None = typer.Option(None, help="Encoding of a CSV/TSV corpus and of a "
                                        "TSV/TXT query file (default: detected: UTF-8, UTF-8 "
                                        "with BOM, or GBK/GB18030; .txt: UTF-8)."),
) -> None:
    """Evaluate models on a query file: batched encoding, _msearch, precise@k and friends.

    Writes RUN_DIR/run.jsonl (query, gold, retrieved, scores), run.trec, metrics.json and
    meta.json (one sub-directory per model when several are given).

    Example: embedarena eval --model minilm --queries test.jsonl --k 1,2,5 --out runs/minilm

    Without Elasticsearch (faiss Flat, exact), seed 002's MSMARCO set (Recall@1/10/100 =
    recall@k, MRR@1/10/100):
    embedarena eval --backend faiss --model minilm --corpus corpus.jsonl --queries dev.jsonl
    --k 1,10,100 --metrics mrr@1,mrr@10,r_cap@10 --out runs/minilm-faiss
    """
    from embedarena.arena import inline_experiment, run_experiment
    from embedarena.cli.progress import CliProgress
    from embedarena.indexer.build import alias_for

    corpus_encoding = encoding if corpus and corpus.suffix.lower() in (".csv", ".tsv") else None
    queries_encoding = encoding if queries.suffix.lower() in (".tsv", ".txt") else None
    if encoding is not None and corpus_encoding is None and queries_encoding is None:
        raise ConfigError("--encoding applies to a CSV/TSV --corpus or a TSV/TXT --queries file "
                          "(JSON and JSONL are UTF-8)")
    exp = inline_experiment(
        model, name="eval", corpus={"path": corpus, "encoding": corpus_encoding} if corpus
        else None, queries=[{"path": queries, "encoding": queries_encoding}],
        metrics=metrics_from_ks(ks, metrics),
        index={"prefix": prefix, "num_candidates": num_candidates, "backend": backend,
               **{k: v for k, v in {"type": index_type, "m": m,
                                    "ef_construction": ef_construction, "nlist": nlist,
                                    "nprobe": nprobe}.items() if v is not None}},
        cache=not no_cache, out=out)
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
