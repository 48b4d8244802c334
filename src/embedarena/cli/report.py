"""`embedarena report RUN...`: HTML / XLSX / Markdown reports for the people who pick a model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from embedarena.cli.console import err_console


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [v for value in values for v in value.split(",") if v.strip()]


def report_cmd(
    runs: Annotated[list[Path], typer.Argument(
        metavar="RUN...",
        help="Run directories (run.jsonl + meta.json), or folders searched for them, such as "
             "the output folder of `embedarena run`.")],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Folder to write report.html, report.xlsx and report.md into.")],
    baseline: Annotated[str | None, typer.Option(
        "--baseline", "-b", help="Model the others are tested against (default: the first "
        "model; for an experiment folder, the first model of the experiment).")] = None,
    metrics: Annotated[str | None, typer.Option(
        "--metrics", "-m", help="Headline metrics, e.g. 'precise@1,2,5,hit@5,mrr@10' (default: "
        "what the runs' metrics.json hold).")] = None,
    key_metrics: Annotated[str | None, typer.Option(
        "--key-metrics", "-k", help="Metrics tested for significance; the first also drives "
        "win/loss, per-label accuracy and error analysis (default: every precise@k among the "
        "headline metrics).")] = None,
    formats: Annotated[str, typer.Option(
        "--formats", "-f", help="Comma-separated: html, xlsx, md.")] = "html,xlsx,md",
    title: Annotated[str | None, typer.Option("--title", help="Report title.")] = None,
    resamples: Annotated[int, typer.Option(
        "--resamples", help="Resamples of the significance tests.")] = 10_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the significance tests.")] = 0,
    max_rows: Annotated[int, typer.Option(
        "--max-rows", help="Per-query rows shown in the HTML per query set (the XLSX has "
        "all).")] = 300,
) -> None:
    """Turn evaluation runs into a report stakeholders open and trust.

    Writes report.html (one self-contained file with plots; opens offline, can be mailed),
    report.xlsx (Summary, Significance, Per-query, Per-label, Confusions, Settings) and
    report.md (the headline table for a wiki or chat).

    Each model is compared with the baseline by a paired randomization test and a paired
    bootstrap confidence interval over queries (Holm-corrected across models). Runs of one
    query set made from different corpora or query files (their meta.json hashes) are refused.

    Example: embedarena report runs/quickstart --baseline bge --out reports/quickstart
    """
    from pydantic import ValidationError

    from embedarena.errors import ConfigError
    from embedarena.evaluation.report import ReportOptions, build_report, render_report

    try:
        options = ReportOptions.model_validate({
            "title": title, "baseline": baseline,
            "metrics": _split([metrics] if metrics else None),
            "key_metrics": _split([key_metrics] if key_metrics else None),
            "formats": [f.strip().lower() for f in formats.split(",") if f.strip()],
            "resamples": resamples, "seed": seed, "max_query_rows": max_rows})
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"report option {loc}: {first['msg']}") from None
    with err_console.status("building the report"):
        report = build_report(runs, options)
        paths = render_report(report, out)
    for p in paths:
        err_console.print(f"wrote {p}")


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)
