"""`embedarena run EXPERIMENT`: build-if-needed → eval → compare, for every model."""

from __future__ import annotations

from pathlib import Path

import typer

from embedarena.cli.console import console, err_console


def run_cmd(
    experiment: Path = typer.Argument(..., exists=True, dir_okay=False,
                                      help="Experiment YAML (see examples/)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (default: the "
                                    "experiment's `out`, else runs/<name> beside it)."),
    force: bool = typer.Option(False, "--force", help="Rebuild every index."),
    only: list[str] = typer.Option([], "--model", "-m", help="Run only these model names."),
    no_report: bool = typer.Option(False, "--no-report", help="Skip the experiment's `report:` "
                                   "section (HTML/XLSX/Markdown)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Count and skip bad records "
                                  "(malformed lines, wrong types) instead of stopping at the "
                                  "first one."),
) -> None:
    """Run an experiment end to end and print the comparison table.

    Indexes whose model fingerprint, corpus and settings are unchanged are reused, and
    embeddings come from the cache, so a re-run only searches.

    Example: embedarena run examples/quickstart.yaml
    """
    from embedarena import pipeline as pl
    from embedarena.evaluation.compare import Comparison
    from embedarena.evaluation.metrics import evaluate, parse_metrics
    from embedarena.experiment import load_experiment
    from embedarena.indexer.es import connect, server_version

    exp = load_experiment(experiment)
    if skip_bad:
        exp.corpus.skip_bad = True
        for q in exp.queries:
            q.skip_bad = True
    out_dir = out or exp.out or experiment.resolve().parent / "runs" / exp.name
    specs = parse_metrics(exp.metrics)
    depth = pl.depth_for(exp.metrics, exp.depth)
    docs = pl.load_corpus_source(exp.corpus)
    sets = pl.load_query_sources(exp.queries)
    err_console.print(f"experiment [bold]{exp.name}[/]: {len(docs)} documents, "
                      + ", ".join(f"{q.name} ({len(q)} queries)" for q in sets)
                      + f", {len(exp.models)} models")
    for qs in sets:
        missing = pl.gold_coverage(docs, qs)
        if missing:
            err_console.print(f"[yellow]warning:[/] {qs.name}: {len(missing)} queries have gold "
                              "labels missing from the corpus; they count as misses")
    client, target = connect()
    es_version = server_version(client, target)
    from embedarena.training.finetune import expand_finetune_entries

    exp.models = expand_finetune_entries(exp.models, experiment.resolve().parent, out_dir,
                                         log=err_console.print, console=err_console,
                                         only=only or None)
    raw_models = list(exp.models)
    pl.check_hybrids(raw_models)
    if only:
        from embedarena.cli.index import _select

        raw_models = _select(raw_models, only)
    comparison = Comparison()
    opts = pl.index_options(exp.index)
    summary = []
    handles: dict[str, pl.ModelHandle] = {}  # built in this run, by name (hybrid members)
    with pl.progress_bar() as progress:
        for raw in raw_models:
            handle = pl.prepare_model(raw, exp.index.prefix, cache=exp.cache)
            built = pl.build_index(client, target, handle, docs, opts, force=force,
                                   progress=progress)
            members = None
            if handle.hybrid:  # members: other entries, built here if not yet
                members = pl.hybrid_members(handle, list(exp.models), handles,
                                            exp.index.prefix, exp.cache)
                for m in members.values():
                    if m.name not in handles:
                        pl.build_index(client, target, m, docs, opts, progress=progress)
                        handles[m.name] = m
            else:
                handles[handle.name] = handle
            for qs in sets:
                run = pl.evaluate_model(client, target, handle, qs, depth,
                                        exp.index.num_candidates, exp.index.msearch_batch,
                                        corpus_sha=docs.sha256(), progress=progress,
                                        members=members)
                run.meta.update(pl.run_metadata(target, es_version, {
                    "experiment": exp.name, "corpus_source": docs.source,
                    "corpus_sha256": docs.sha256(), "queries_source": qs.source,
                    "queries_sha256": qs.sha256(), "index_reused": built.reused,
                }))
                result = evaluate(run, specs)
                run_dir = out_dir / pl_slug(qs.name) / pl_slug(handle.name)
                run.save(run_dir)
                result.save(run_dir / "metrics.json")
                comparison.add(handle.name, qs.name, result, ann=run.meta.get("ann_check"))
            stats = getattr(handle.embedder, "stats", None)
            summary.append({"model": handle.name, "alias": built.alias, "index": built.index,
                            "reused_index": built.reused,
                            "cache": dict(stats) if isinstance(stats, dict) else None})
            if built.reused and not handle.hybrid:
                err_console.print(f"{handle.name}: reused index {built.index}")
    comparison.save(out_dir)
    pl.save_json(out_dir / "experiment.json", {
        "name": exp.name, "metrics": exp.metrics, "depth": depth,
        "models": summary, "query_sets": [q.name for q in sets],
        "experiment_file": str(experiment.resolve()),
    })
    console.print(comparison.to_rich_table())
    if exp.report is not None and not no_report:
        from embedarena.evaluation.report import write_report

        with err_console.status("writing the report"):
            paths = write_report([out_dir], out_dir / "report", exp.report)
        for p in paths:
            err_console.print(f"wrote {p}")
    err_console.print(f"results in {out_dir}")


def pl_slug(name: str) -> str:
    import re

    s = re.sub(r"[^\w.-]+", "-", name, flags=re.UNICODE).strip("-.")
    return s or "unnamed"


def register(app: typer.Typer) -> None:
    app.command("run")(run_cmd)
