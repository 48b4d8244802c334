"""`embedarena tune-fusion EXPERIMENT`: pick a hybrid's fusion weights on dev, report on test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from embedarena.cli.console import console, err_console
from embedarena.errors import ConfigError


def tune_fusion_cmd(
    experiment: Path = typer.Argument(..., exists=True, dir_okay=False, metavar="EXPERIMENT",
                                      help="Experiment YAML with a hybrid model entry."),
    hybrid: str | None = typer.Option(None, "--hybrid", "-H", help="Which hybrid entry (needed "
                                      "when the experiment has several)."),
    queries: str | None = typer.Option(None, "--queries", "-q", help="Query set to split into "
                                       "dev and test (default: the experiment's first)."),
    dev_fraction: float = typer.Option(0.5, help="Share of the queries used for tuning."),
    seed: int = typer.Option(0, help="Seed of the dev/test split."),
    dev: str | None = typer.Option(None, "--dev", help="Use this whole query set as dev "
                                   "(with --test) instead of splitting one set."),
    test: str | None = typer.Option(None, "--test", help="Query set to report on (with --dev)."),
    objective: str = typer.Option("ndcg@10", help="Metric maximised on dev."),
    methods: str = typer.Option("rrf,weighted", help="Fusion methods to search."),
    step: float = typer.Option(0.1, help="Weight grid step (weights sum to 1)."),
    ks: str = typer.Option("1,5,10,20,40,60,100", "--rrf-k", help="RRF constants to search."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write tune.json and tune.md."),
) -> None:
    """Tune a hybrid's fusion on dev queries; report it on separate test queries.

    Searches method (rrf, weighted), RRF k, weights and normalisation, then reports the
    members, the experiment's own fusion and the tuned fusion on both dev and test.

    The tuner never sees a test query: runs are cut to the dev queries before tuning, and a
    split that shares a query id or text between dev and test is refused.

    Example: embedarena tune-fusion examples/hybrid.yaml --hybrid hyb --objective ndcg@10
    """
    from embedarena.arena import tune_fusion
    from embedarena.cli.progress import CliProgress

    method_list = [m.strip() for m in methods.split(",") if m.strip()]
    try:
        rrf_ks = [int(x) for x in ks.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--rrf-k takes comma-separated integers, got {ks!r}") from None
    with CliProgress() as progress:
        outcome = tune_fusion(experiment, hybrid, queries=queries, dev_fraction=dev_fraction,
                              seed=seed, dev=dev, test=test, objective=objective,
                              methods=method_list, step=step, rrf_ks=rrf_ks,
                              progress=progress)
    report = outcome.report
    exp_metrics = _metrics(experiment)
    _print(report, objective, exp_metrics)
    v = report.versus
    if v.get("difference") is not None:
        err_console.print(f"test: tuned fusion {v['tuned_value']:.4f} vs best member "
                          f"{v['best_member']} {v['best_member_value']:.4f} on {v['metric']} "
                          f"(difference {v['difference']:+.4f}, paired randomization "
                          f"p = {v['p_value']:.3g})")
    best = report.tune.best
    err_console.print(f"tuned on dev: {best.describe()} ({objective} {report.tune.best_score:.4f})"
                      f"\nmodel entry: {outcome.entry}", highlight=False)
    if out is not None:
        _save(out, report, outcome.entry, outcome.split, objective)


def _metrics(experiment: Path) -> list[str]:
    from embedarena.experiment import load_experiment

    return list(load_experiment(experiment).metrics)


def _print(report: Any, objective: str, metrics: list[str]) -> None:
    from rich.table import Table
    from rich.text import Text

    from embedarena.evaluation.compare import format_value

    cols = list(dict.fromkeys([objective, *metrics]))
    table = Table(title="fusion tuned on dev, reported on test (never tuned on)",
                  title_justify="left")
    for c in ["split", "system", "params", "n", *cols]:
        table.add_column(Text(c), justify="right" if c not in ("split", "system", "params")
                         else "left")
    for r in report.rows:
        table.add_row(r["split"], Text(r["system"]), Text(r["params"]), str(r["n"]),
                      *(format_value(c, r.get(c)) for c in cols))
    console.print(table)


def _save(out: Path, report: Any, entry: dict[str, Any], split_desc: str, objective: str) -> None:
    from embedarena.arena import save_json
    from embedarena.evaluation.compare import format_value

    top = sorted(report.tune.scores, key=lambda ps: -ps[1])[:20]
    save_json(out / "tune.json", {
        "objective": objective, "split": split_desc, "best": entry,
        "best_dev_score": report.tune.best_score,
        "dev_qids": report.dev_qids, "test_qids": report.test_qids,
        "rows": report.rows, "test_vs_best_member": report.versus,
        "top_dev_settings": [{"params": p.to_dict(), objective: v} for p, v in top],
    })
    cols = [c for c in report.rows[0] if c not in ("split", "system", "params", "n")]
    lines = ["| split | system | params | n | " + " | ".join(cols) + " |",
             "|---|---|---|---:|" + "---:|" * len(cols)]
    for r in report.rows:
        lines.append(f"| {r['split']} | {r['system']} | {r['params']} | {r['n']} | "
                     + " | ".join(format_value(c, r.get(c)) for c in cols) + " |")
    (out / "tune.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    err_console.print(f"wrote {out / 'tune.json'} and {out / 'tune.md'}")


def register(app: typer.Typer) -> None:
    app.command("tune-fusion")(tune_fusion_cmd)
