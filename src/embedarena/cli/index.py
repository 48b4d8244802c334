"""`embedarena index build | list | info | delete`: one Elasticsearch index per model."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from embedarena.cli.console import console
from embedarena.errors import ConfigError

app = typer.Typer(
    no_args_is_help=True,
    help=(
        "Build and manage one dense-vector index per model over a corpus. Each model's index is "
        "an alias; a rebuild writes a new index and swaps the alias only when it is complete.\n\n"
        "Example: embedarena index build --model hf:./bge-small-zh --corpus label.json"
    ),
)

MODEL_HELP = ("Model: inline spec (hf:DIR, minilm, azure:DEPLOYMENT, openai:MODEL, bm25) or a "
              "name from --experiment. Repeatable.")


@app.command()
def build(
    model: list[str] = typer.Option([], "--model", "-m", help=MODEL_HELP),
    corpus: Path | None = typer.Option(None, "--corpus", "-c", exists=True, dir_okay=False,
                                       help="Corpus file (label.json, JSONL, CSV, XLSX)."),
    dataset: str | None = typer.Option(None, help="Use a named dataset's corpus instead."),
    column: str | None = typer.Option(None, help="CSV/XLSX column holding the text."),
    encoding: str | None = typer.Option(None, help="Encoding of a CSV/TSV corpus (default: "
                                        "detected: UTF-8, UTF-8 with BOM, or GBK/GB18030)."),
    experiment: Path | None = typer.Option(None, "--experiment", "-e", exists=True,
                                           dir_okay=False, help="Take corpus, models and "
                                           "index options from this experiment file."),
    index_type: str = typer.Option("hnsw", "--type", help="hnsw, int8_hnsw, bbq_hnsw, flat "
                                   "(exact), int8_flat, bbq_flat or bbq_disk (9.2+)."),
    similarity: str | None = typer.Option(None, help="cosine or dot_product (default: "
                                          "dot_product for normalised embedders, else cosine)."),
    prefix: str = typer.Option("embedarena-", help="Index/alias name prefix."),
    shards: int = typer.Option(1, min=1, help="Primary shards per index."),
    replicas: int = typer.Option(0, min=0, help="Replicas per shard (loaded with 0, restored "
                                 "before the alias moves)."),
    force: bool = typer.Option(False, "--force", help="Rebuild even when the index is current."),
    keep_old: bool = typer.Option(False, "--keep-old", help="Keep the previous physical index."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not use the embedding cache."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Count and skip bad records "
                                  "(malformed lines, wrong types) instead of stopping at the "
                                  "first one."),
) -> None:
    """Build (or reuse, when nothing changed) the index of each model.

    Example: embedarena index build --model minilm --model bm25 --dataset cranfield
    """
    from embedarena.arena import inline_experiment, run_experiment
    from embedarena.cli.progress import CliProgress
    from embedarena.cli.render import print_builds
    from embedarena.experiment import load_experiment

    if encoding is not None and corpus is None:
        raise ConfigError("--encoding applies to a --corpus file (an experiment's corpus takes "
                          "`encoding:`)")
    if experiment is not None:
        exp = load_experiment(experiment)
        if no_cache:
            exp.cache = False
        only = list(model) or None
    else:
        if not model:
            raise ConfigError("name at least one --model (or give --experiment)")
        if (corpus is None) == (dataset is None):
            raise ConfigError("give exactly one of --corpus or --dataset")
        exp = inline_experiment(
            model, name="index", corpus={"path": corpus, "dataset": dataset, "column": column,
                                          "encoding": encoding},
            index={"prefix": prefix, "type": index_type, "similarity": similarity,
                   "shards": shards, "replicas": replicas},
            cache=not no_cache)
        only = None
    with CliProgress() as progress:
        result = run_experiment(exp, only=only, force=force, search=False, keep_old=keep_old,
                                progress=progress, skip_bad=skip_bad, report=False)
    print_builds(result)


@app.command("list")
def list_(prefix: str = typer.Option("embedarena-", help="Alias prefix to list.")) -> None:
    """List embedarena indexes with their model, live document count, state and build time.

    `docs` is what the index holds now (with the planned count when they differ); `state`
    is serving (an alias points at it), building (a live build owns it), kept (--keep-old)
    or orphan (a killed build's partial index: `embedarena index prune` deletes it).

    Example: embedarena index list
    """
    from embedarena.indexer.build import list_indexes
    from embedarena.indexer.es import connect, es_errors

    client, target = connect()
    with es_errors(target):
        rows = list_indexes(client, prefix)
    if not rows:
        console.print(f"no embedarena indexes (prefix '{prefix}') at {target.display}")
        return
    from rich.table import Column

    # names stay whole (they are what `index delete` takes); other columns wrap first
    table = Table(Column("alias", no_wrap=True), "model", "kind", "docs", "dim",
                  Column("index", no_wrap=True,
                         min_width=max(len(r["index"]) for r in rows)), "state", "created")
    for r in rows:
        live, planned = r["live_doc_count"], r.get("doc_count")
        docs = str(live) if planned in (None, live) else f"{live} of {planned}"
        table.add_row(", ".join(r["aliases"]) or "-", str(r.get("model", "")),
                      str(r.get("kind", "")), docs, str(r.get("dim", "")), r["index"],
                      r["state"], str(r.get("created", "")))
    console.print(table)


@app.command()
def info(name: str = typer.Argument(..., help="Alias (e.g. embedarena-minilm) or model name."),
         prefix: str = typer.Option("embedarena-", help="Alias prefix for model names.")) -> None:
    """Show an index's metadata: model, fingerprint, corpus hash, settings.

    Example: embedarena index info minilm
    """
    from embedarena.indexer.build import alias_for, index_meta
    from embedarena.indexer.es import connect, es_errors

    client, target = connect()
    alias = name if name.startswith(prefix) else alias_for(name, prefix)
    with es_errors(target):
        meta = index_meta(client, alias)
        if meta is None:
            raise ConfigError(f"no embedarena index '{alias}' at {target.display}")
        count = client.count(index=alias)["count"]
    meta["live_doc_count"] = count
    console.print_json(json.dumps(meta, ensure_ascii=False, default=str))


@app.command()
def delete(name: str = typer.Argument(..., help="Alias, model name, or the name of one "
                                      "physical index (as `index list` shows it)."),
           prefix: str = typer.Option("embedarena-", help="Alias prefix for model names."),
           yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask.")) -> None:
    """Delete a model's index (the alias and every physical index behind it), or one physical
    index that no alias points at (an orphan, or one kept with --keep-old).

    Example: embedarena index delete minilm --yes
    """
    from embedarena.indexer.build import alias_for, delete_index
    from embedarena.indexer.es import connect, es_errors

    alias = name if name.startswith(prefix) else alias_for(name, prefix)
    if not yes:
        typer.confirm(f"delete index {alias}?", abort=True)
    client, target = connect()
    with es_errors(target):
        gone = delete_index(client, alias)
    console.print(f"deleted {alias}" + ("" if gone == [alias] else f" ({', '.join(gone)})"),
                  highlight=False)


@app.command()
def prune(prefix: str = typer.Option("embedarena-", help="Index name prefix."),
          dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would go.")
          ) -> None:
    """Delete orphaned partial indexes: those that killed or crashed builds left (no alias
    points at them and no live build owns them). Indexes kept with --keep-old stay.

    Every build already does this for its own model; this does it for every model.

    Example: embedarena index prune --dry-run
    """
    from embedarena.indexer.build import prune_orphans
    from embedarena.indexer.es import connect, es_errors

    client, target = connect()
    with es_errors(target):
        gone = prune_orphans(client, prefix=prefix, dry_run=dry_run)
    if not gone:
        console.print(f"no orphaned indexes (prefix '{prefix}') at {target.display}")
        return
    verb = "would delete" if dry_run else "deleted"
    console.print(f"{verb} {len(gone)} orphaned index(es): {', '.join(gone)}", highlight=False)
