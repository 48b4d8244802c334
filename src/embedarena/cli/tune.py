"""`embedarena tune-fusion EXPERIMENT`: pick a hybrid's fusion weights on dev, report on test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from embedarena.cli.console import console, err_console
from embedarena.errors import ConfigError


def _hybrid_entry(models: list[Any], name: str | None) -> Any:
    from embedarena.embedders.spec import HybridSpec, parse_model_spec

    hybrids = [s for s in (parse_model_spec(m) for m in models) if isinstance(s, HybridSpec)]
    if name is None:
        if not hybrids:
            raise ConfigError("the experiment has no hybrid model; add one, e.g. "
                              "{name: hyb, hybrid: [bm25, minilm]}")
        if len(hybrids) > 1:
            raise ConfigError(f"the experiment has {len(hybrids)} hybrid models "
                              f"({', '.join(h.name for h in hybrids)}); choose one with --hybrid")
        return hybrids[0]
    for h in hybrids:
        if h.name == name:
            return h
    raise ConfigError(f"no hybrid model named '{name}' in the experiment; hybrids: "
                      f"{', '.join(h.name for h in hybrids) or 'none'}")


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
    from embedarena import pipeline as pl
    from embedarena.data.datasets import split_queries
    from embedarena.data.types import Query, QuerySet
    from embedarena.evaluation.fusion import param_grid, tune_then_test
    from embedarena.evaluation.hybrid import member_runs, resolve_members
    from embedarena.evaluation.metrics import parse_metric
    from embedarena.experiment import load_experiment
    from embedarena.indexer.es import connect

    exp = load_experiment(experiment)
    spec = _hybrid_entry(list(exp.models), hybrid)
    parse_metric(objective)  # fail before any search on a typo
    method_list = [m.strip() for m in methods.split(",") if m.strip()]
    if not method_list or any(m not in ("rrf", "weighted") for m in method_list):
        raise ConfigError(f"--methods takes rrf and/or weighted, got {methods!r}")
    try:
        rrf_ks = [int(x) for x in ks.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--rrf-k takes comma-separated integers, got {ks!r}") from None
    depth = pl.depth_for(exp.metrics, exp.depth)
    docs = pl.load_corpus_source(exp.corpus)
    sets = {q.name: q for q in pl.load_query_sources(exp.queries)}
    if (dev is None) != (test is None):
        raise ConfigError("give both --dev and --test, or neither (then one set is split)")
    if dev is not None and test is not None:
        for n in (dev, test):
            if n not in sets:
                raise ConfigError(f"no query set '{n}' in the experiment; sets: {list(sets)}")
        if dev == test:
            raise ConfigError("--dev and --test name the same query set")
        dev_qs, test_qs = sets[dev], sets[test]
        split_desc = f"dev = set {dev}, test = set {test}"
    else:
        name = queries or next(iter(sets))
        if name not in sets:
            raise ConfigError(f"no query set '{name}' in the experiment; sets: {list(sets)}")
        dev_qs, test_qs = split_queries(sets[name], 1 - dev_fraction, seed)
        split_desc = (f"{name} split {dev_fraction:.0%} dev / {1 - dev_fraction:.0%} test, "
                      f"seed {seed}")
    # one search round per member over both halves; qids prefixed so two sets cannot collide
    both = QuerySet("tune", [Query(f"dev/{q.qid}", q.text, q.gold) for q in dev_qs]
                    + [Query(f"test/{q.qid}", q.text, q.gold) for q in test_qs])
    dev_ids = [f"dev/{q.qid}" for q in dev_qs]
    test_ids = [f"test/{q.qid}" for q in test_qs]

    client, target = connect()
    handles = {}
    for raw in exp.models:
        from embedarena.embedders.spec import parse_model_spec

        s = parse_model_spec(raw)
        if s.name in spec.hybrid:
            handles[s.name] = pl.prepare_model(raw, exp.index.prefix, cache=exp.cache)
    members = resolve_members(spec, handles)
    opts = pl.index_options(exp.index)
    candidates = max(spec.candidates, depth)
    grid = param_grid(len(members), method_list, step, rrf_ks)  # type: ignore[arg-type]
    err_console.print(f"tuning [bold]{spec.name}[/] ({' + '.join(spec.hybrid)}): {split_desc}; "
                      f"{len(dev_qs)} dev / {len(test_qs)} test queries, {len(grid)} settings, "
                      f"objective {objective}, members searched {candidates} deep")
    with pl.progress_bar() as progress:
        for m in members:
            pl.build_index(client, target, m, docs, opts, progress=progress)
        runs = member_runs(client, target, members, both, candidates,
                           exp.index.num_candidates, exp.index.msearch_batch,
                           corpus_sha=docs.sha256(), progress=progress)
        task = progress.add_task("tune on dev", total=len(grid))
        report = tune_then_test(runs, dev_ids, test_ids, objective, grid, depth, exp.metrics,
                                baseline=spec.fusion_params(),
                                progress=lambda n: progress.advance(task, n))
    _print(report, objective, exp.metrics)
    v = report.versus
    if v.get("difference") is not None:
        err_console.print(f"test: tuned fusion {v['tuned_value']:.4f} vs best member "
                          f"{v['best_member']} {v['best_member_value']:.4f} on {v['metric']} "
                          f"(difference {v['difference']:+.4f}, paired randomization "
                          f"p = {v['p_value']:.3g})")
    best = report.tune.best
    entry = {"name": spec.name, "hybrid": list(spec.hybrid), **best.to_dict()}
    err_console.print(f"tuned on dev: {best.describe()} ({objective} {report.tune.best_score:.4f})"
                      f"\nmodel entry: {entry}")
    if out is not None:
        _save(out, report, entry, split_desc, objective)


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
    from embedarena.evaluation.compare import format_value
    from embedarena.pipeline import save_json

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
