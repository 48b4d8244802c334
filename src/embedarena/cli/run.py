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
    from embedarena.arena import run_experiment
    from embedarena.cli.progress import CliProgress
    from embedarena.cli.render import print_builds

    with CliProgress() as progress:
        result = run_experiment(experiment, out, only=only or None, force=force,
                                progress=progress, report=not no_report, skip_bad=skip_bad)
    print_builds(result, only_reused=True)
    console.print(result.comparison.to_rich_table())
    for p in result.report_paths:
        err_console.print(f"wrote {p}")
    err_console.print(f"results in {result.out_dir}")


def register(app: typer.Typer) -> None:
    app.command("run")(run_cmd)
