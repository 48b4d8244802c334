"""`embedarena calibrate RUN_DIR --dev DEV`: per-model "no label" thresholds, fitted on dev."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from embedarena.cli.console import console, err_console
from embedarena.errors import ConfigError, DataError

if TYPE_CHECKING:
    from embedarena.evaluation.run import Run


def _runs(path: Path) -> list[tuple[Path, Run]]:
    from embedarena.evaluation.compare import find_run_dirs
    from embedarena.evaluation.run import Run

    return [(d, Run.load(d)) for d in find_run_dirs([path])]


def calibrate_cmd(
    run_dir: Path = typer.Argument(..., exists=True, metavar="RUN_DIR",
                                   help="Test run directory, or a folder of "
                                   "them (one per model, as `embedarena run` writes)."),
    dev: Path = typer.Option(..., "--dev", exists=True, help="Dev data with no-match queries: "
                             "run directory/folder of the same models, or a query file (then "
                             "each model searches it)."),
    ks: str = typer.Option("1,2,5", "--k", help="Cutoffs for precise@k."),
    target_precision: float | None = typer.Option(
        None, help="Instead of max F1: most abstention recall at this abstention precision."),
    sigmoid: bool = typer.Option(False, "--sigmoid", help="Sigmoid-normalise scores first "
                                 "(reranker logits), so thresholds read as probabilities."),
    corpus: Path | None = typer.Option(None, "--corpus", "-c", exists=True, dir_okay=False,
                                       help="Label corpus: queries whose gold is not in it "
                                       "count as no-match."),
    none_label: str | None = typer.Option(None, help="Gold label meaning 'no label fits'."),
    objective: str = typer.Option("f1", help="'f1': max F1 of abstention; 'e2e': max "
                                  "end-to-end accuracy at the smallest k (abstain right on "
                                  "no-match, answer right otherwise)."),
    correct: str = typer.Option("precise", help="When an answered query is right: 'precise' "
                                "(every gold in the top k, for label data) or 'hit' (any "
                                "gold, for collections with many relevant documents)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write calibration.json here "
                                    "(default: RUN_DIR)."),
) -> None:
    """Find, per model, the top-1 score below which the system should answer "no label".

    Fitted on the dev data (max F1 of abstention, --target-precision, or --objective e2e:
    best end-to-end accuracy, which does not collapse into "always abstain" when scores
    separate no-match queries poorly), applied to the test
    run: abstention precision/recall, coverage, precise@k on answered queries, and e2e@k (a
    no-match query is right iff abstained; a matchable one iff answered with all gold in the
    top k). No-match queries: no relevant gold, gold = --none-label, or gold not in --corpus.

    Example: embedarena calibrate runs/exp/test --dev runs/exp/dev --k 1,5
    """
    from embedarena.arena import save_json
    from embedarena.cli.evaluate import parse_ks
    from embedarena.evaluation.calibrate import calibrate

    cut = parse_ks(ks)
    corpus_ids = None
    if corpus is not None:
        from embedarena.data.readers import load_corpus

        corpus_ids = set(load_corpus(corpus).ids)
    tests = _runs(run_dir)
    dev_runs: dict[str, Run] = {}
    if dev.is_dir():
        for d, r in _runs(dev):
            if r.model in dev_runs:
                raise DataError(d, f"a second dev run of model '{r.model}'; point --dev at one "
                                "query set's folder")
            dev_runs[r.model] = r
    results = []
    unreachable: list[dict[str, str]] = []
    for d, test in tests:
        dev_run = dev_runs.get(test.model)
        if dev_run is None:
            if dev.is_dir():
                raise DataError(dev, f"no dev run of model '{test.model}' (dev runs: "
                                f"{', '.join(dev_runs) or 'none'})")
            depth = max((len(r.retrieved) for r in test.results), default=10)
            from embedarena.arena import search_like
            from embedarena.cli.progress import CliProgress

            with CliProgress() as progress:
                dev_run = search_like(test, dev, depth, progress=progress)
        try:
            cal = calibrate(dev_run, test, cut, sigmoid, target_precision, corpus_ids,
                            none_label, correct, objective)
        except ConfigError as e:
            if target_precision is None or "reaches abstention precision" not in str(e):
                raise
            # one model missing the target must not hide the others' thresholds
            unreachable.append({"model": test.model, "error": str(e)})
            continue
        results.append((d, cal))
    _print([c for _, c in results], cut, correct)
    for u in unreachable:
        err_console.print(f"[yellow]{u['model']}:[/] {u['error']}")
    dest = out or (run_dir if run_dir.is_dir() else run_dir.parent)
    save_json(dest / "calibration.json", {"dev": str(dev), "k": cut, "correct": correct,
                                          "objective": objective,
                                          "models": [c.to_dict() for _, c in results],
                                          "unreachable": unreachable})
    err_console.print(f"wrote {dest / 'calibration.json'}")


def _pct(v: float | None) -> str:
    import math

    return "" if v is None or not math.isfinite(v) else f"{100 * v:.1f}"


def _print(cals: list[Any], ks: list[int], correct: str) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="no-label thresholds (fitted on dev, applied to test)",
                  title_justify="left",
                  caption="abstain when top-1 score < threshold; P/R/F1 of abstention on test "
                  f"(positive = no-match query); {correct}@k on matchable queries, without and "
                  "with the threshold (answered); e2e@k over all queries; values in %",
                  caption_justify="left")
    cols = ["model", "threshold", "dev F1", "abst P", "abst R", "abst F1", "coverage"]
    cols += [f"{correct}@{k}" for k in ks] + [f"answered {correct}@{k}" for k in ks]
    cols += [f"e2e@{k}" for k in ks]
    for c in cols:
        table.add_column(Text(c), justify="left" if c == "model" else "right")
    for c in cals:
        m, t = c.test_metrics, c.test
        table.add_row(Text(c.model), f"{c.dev.threshold:.4g}", _pct(c.dev.f1),
                      _pct(t.precision if t else None), _pct(t.recall if t else None),
                      _pct(t.f1 if t else None), _pct(m.get("coverage")),
                      *(_pct(m.get(f"{correct}@{k}")) for k in ks),
                      *(_pct(m.get(f"answered_{correct}@{k}")) for k in ks),
                      *(_pct(m.get(f"e2e@{k}")) for k in ks))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate_cmd)
