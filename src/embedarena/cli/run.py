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
    backend: str | None = typer.Option(None, "--backend", help="Override the experiment's "
                                       "index backend: elasticsearch, or faiss (embedder rows "
                                       "in process, no node needed; bm25 rows still need one, "
                                       "leave them out with -m). A new backend takes its "
                                       "default index type (faiss: flat, exact) unless "
                                       "--index-type is given."),
    index_type: str | None = typer.Option(None, "--index-type", help="Override the "
                                          "experiment's index type: elasticsearch hnsw, "
                                          "int8_hnsw, bbq_hnsw, flat, int8_flat, bbq_flat, "
                                          "bbq_disk (9.2+); faiss flat, hnsw, ivf."),
) -> None:
    """Run an experiment end to end and print the comparison table.

    Indexes whose model fingerprint, corpus and settings are unchanged are reused, and
    embeddings come from the cache, so a re-run only searches.

    With --backend or --index-type and no --out, results go beside the experiment's own, in
    <out>-<backend>-<type>, so the two can be compared (embedarena compare A B).

    Example: embedarena run examples/quickstart.yaml

    Example: embedarena run examples/quickstart.yaml --backend faiss -m minilm
    """
    from embedarena.arena import run_experiment
    from embedarena.cli.progress import CliProgress
    from embedarena.cli.render import print_builds

    if (backend is not None or index_type is not None) and out is None:
        from embedarena.experiment import load_experiment

        exp = load_experiment(experiment)
        if exp.out is not None:
            cfg = exp.index.overridden(backend, index_type)
            out = exp.out.with_name(f"{exp.out.name}-{cfg.backend}-{cfg.type}")
    with CliProgress() as progress:
        result = run_experiment(experiment, out, only=only or None, force=force,
                                progress=progress, report=not no_report, skip_bad=skip_bad,
                                backend=backend, index_type=index_type)
    print_builds(result, only_reused=True)
    console.print(result.comparison.to_rich_table())
    for p in result.report_paths:
        err_console.print(f"wrote {p}")
    err_console.print(f"results in {result.out_dir}")


def register(app: typer.Typer) -> None:
    app.command("run")(run_cmd)
