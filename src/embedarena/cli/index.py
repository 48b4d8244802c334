"""`embedarena index build | list | info | delete`: one Elasticsearch index per model."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from embedarena.cli.console import console, err_console
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
    experiment: Path | None = typer.Option(None, "--experiment", "-e", exists=True,
                                           dir_okay=False, help="Take corpus, models and "
                                           "index options from this experiment file."),
    index_type: str = typer.Option("hnsw", "--type", help="hnsw, int8_hnsw, flat (exact) or "
                                   "int8_flat."),
    similarity: str | None = typer.Option(None, help="cosine or dot_product (default: "
                                          "dot_product for normalised embedders, else cosine)."),
    prefix: str = typer.Option("embedarena-", help="Index/alias name prefix."),
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
    from embedarena import pipeline as pl
    from embedarena.experiment import CorpusSource, IndexConfig, load_experiment
    from embedarena.indexer.es import connect

    if experiment is not None:
        exp = load_experiment(experiment)
        csrc = exp.corpus
        csrc.skip_bad = csrc.skip_bad or skip_bad
        icfg = exp.index
        from embedarena.training.finetune import expand_finetune_entries

        assert exp.out is not None  # load_experiment always sets it
        # `finetune:` entries become the hf entry of their trained model (trained if needed)
        raw_models: list[object] = expand_finetune_entries(
            list(exp.models), experiment.resolve().parent, exp.out, log=err_console.print,
            console=err_console, only=list(model) or None)
        if model:
            raw_models = _select(raw_models, model)
    else:
        if not model:
            raise ConfigError("name at least one --model (or give --experiment)")
        if (corpus is None) == (dataset is None):
            raise ConfigError("give exactly one of --corpus or --dataset")
        csrc = CorpusSource(path=corpus, dataset=dataset, column=column, skip_bad=skip_bad)
        icfg = IndexConfig(prefix=prefix, type=index_type,  # type: ignore[arg-type]
                           similarity=similarity)  # type: ignore[arg-type]
        raw_models = list(model)
    docs = pl.load_corpus_source(csrc)
    err_console.print(f"corpus: {len(docs)} documents from {docs.source}")
    client, target = connect()
    opts = pl.index_options(icfg)
    with pl.progress_bar() as progress:
        for raw in raw_models:
            handle = pl.prepare_model(raw, icfg.prefix, cache=not no_cache)
            if handle.hybrid:
                console.print(f"{handle.name}: hybrid row, searches its members' indexes")
                continue
            res = pl.build_index(client, target, handle, docs, opts, force=force,
                                 keep_old=keep_old, progress=progress)
            if res.reused:
                console.print(f"{handle.name}: index {res.alias} is current "
                              f"({res.docs} docs, same model fingerprint and corpus); reused")
            else:
                console.print(f"{handle.name}: built {res.index} ({res.docs} docs, "
                              f"{res.seconds:.1f} s) → alias {res.alias}"
                              + (f"; deleted {', '.join(res.deleted_old)}"
                                 if res.deleted_old else ""))


def _select(raw_models: list[object], names: list[str]) -> list[object]:
    from embedarena.embedders.spec import parse_model_spec

    by_name = {parse_model_spec(m).name: m for m in raw_models}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ConfigError(f"no model named {missing} in the experiment; it has {list(by_name)}")
    return [by_name[n] for n in names]


@app.command("list")
def list_(prefix: str = typer.Option("embedarena-", help="Alias prefix to list.")) -> None:
    """List embedarena indexes with their model, document count and build time.

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
    table = Table("alias", "model", "kind", "docs", "dim", "index", "created")
    for r in rows:
        table.add_row(str(r.get("alias")), str(r.get("model", "")), str(r.get("kind", "")),
                      str(r.get("doc_count", "")), str(r.get("dim", "")), r["index"],
                      str(r.get("created", "")))
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
def delete(name: str = typer.Argument(..., help="Alias or model name."),
           prefix: str = typer.Option("embedarena-", help="Alias prefix for model names."),
           yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask.")) -> None:
    """Delete a model's index (the alias and every physical index behind it).

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
    console.print(f"deleted {alias} ({', '.join(gone)})")
