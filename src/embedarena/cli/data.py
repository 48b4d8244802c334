"""`embedarena data prepare | fetch | inspect | list`: get data into shape and check it.

Readers, openpyxl and httpx are imported inside the commands, so `embedarena --help` stays
light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from embedarena.cli.console import console, err_console
from embedarena.errors import ConfigError

if TYPE_CHECKING:
    from embedarena.data.readers import LoadReport

app = typer.Typer(
    no_args_is_help=True,
    help=(
        "Prepare, fetch and inspect retrieval data: spreadsheets to train/test JSONL and a "
        "label corpus, public datasets by name, and any corpus or query file checked record by "
        "record.\n\n"
        "Example: embedarena data inspect test.jsonl --corpus label.json"
    ),
)

KINDS = ("auto", "corpus", "queries", "train")


@app.command()
def prepare(
    source: Path = typer.Argument(..., exists=True, dir_okay=False,
                                  help="Spreadsheet (.xlsx) or CSV with a question column and "
                                       "label columns."),
    out: Path = typer.Option(Path("data"), "--out", "-o", file_okay=False,
                             help="Folder for train.jsonl, test.jsonl and label.json."),
    question_column: str = typer.Option("Question", help="Header of the question column."),
    label_prefix: str = typer.Option("Label", help="Label columns are named PREFIX, PREFIX2, "
                                                   "PREFIX4, ... (repeats allowed)."),
    negatives: int = typer.Option(10, "--negatives", "-n", min=0,
                                  help="Random negative labels per training row (never one of "
                                       "the row's labels)."),
    test_size: str = typer.Option("0.1", help="Test rows: a fraction (0.1) or a count (234)."),
    seed: int = typer.Option(42, help="Seed for the split and the negatives."),
    sheet: str | None = typer.Option(None, help="Worksheet name (default: the first)."),
    encoding: str | None = typer.Option(None, help="Encoding of a CSV/TSV file (default: "
                                        "detected: UTF-8, UTF-8 with BOM, or GBK/GB18030)."),
) -> None:
    """Turn a labelled spreadsheet into train/test JSONL and a label corpus.

    Drops rows with an empty question or no label (counted), gathers every label column into
    `pos`, adds random negatives to training rows, and splits train/test with a seed.

    Example: embedarena data prepare disease.xlsx --out data --negatives 10 --test-size 234
    """
    from embedarena.data.prepare import parse_test_size, prepare_spreadsheet

    res = prepare_spreadsheet(source, out, question_column=question_column,
                              label_prefix=label_prefix, negatives=negatives,
                              test_size=parse_test_size(test_size), seed=seed, sheet=sheet,
                              encoding=encoding)
    table = Table(title=f"prepare {escape(str(source))}", show_header=False)
    table.add_row("label columns", escape(", ".join(res.label_columns)))
    table.add_row("rows read", str(res.rows_read))
    for reason in ("blank row", "empty question", "no label"):
        table.add_row(f"dropped: {reason}", str(res.dropped.get(reason, 0)))
    table.add_row("written: train", f"{res.train}  → {escape(str(res.outputs['train']))}")
    table.add_row("written: test", f"{res.test}  → {escape(str(res.outputs['test']))}")
    table.add_row("distinct labels", f"{res.labels}  → {escape(str(res.outputs['labels']))}")
    table.add_row("negatives per train row", str(res.negatives))
    if res.rows_short_of_negatives:
        table.add_row("rows with fewer negatives (too few labels)",
                      str(res.rows_short_of_negatives))
    table.add_row("duplicate questions (kept)", str(res.duplicate_questions))
    table.add_row("test labels never seen in train", str(res.test_labels_not_in_train))
    console.print(table)
    check = "ok" if res.balanced else "MISMATCH"
    console.print(f"rows in = dropped + written: {res.rows_read} = "
                  f"{sum(res.dropped.values())} + {res.train + res.test} ({check})")


@app.command()
def fetch(
    name: str = typer.Argument(..., help="Dataset name (see `embedarena data list`) or 'all'."),
    mirror: str | None = typer.Option(None, help="Base URL serving the shared-data layout "
                                                 "(<mirror>/<folder>/<file>) instead of the "
                                                 "original GitHub sources. Default: "
                                                 "$EMBEDARENA_DATA_MIRROR."),
    dest: Path | None = typer.Option(None, file_okay=False,
                                     help="Download into DEST/NAME instead of the datasets "
                                          "cache."),
    progress: bool = typer.Option(True, "--progress/--no-progress",
                                  help="Show a progress bar."),
) -> None:
    """Download a public dataset from its original source, checking every file's sha256.

    Files already present with the right checksum are not downloaded again.

    Example: embedarena data fetch cranfield
    """
    from embedarena.cli.progress import CliProgress
    from embedarena.data.datasets import dataset_names, get_spec
    from embedarena.data.fetch import fetch as do_fetch
    from embedarena.progress import using

    names = dataset_names() if name == "all" else [get_spec(name).name]
    for n in names:
        with CliProgress() as bar, using(bar):
            res = do_fetch(n, dest=dest, mirror=mirror, progress=progress)
        console.print(f"{n}: downloaded {len(res.downloaded)} file(s) "
                      f"({res.bytes_downloaded:,} bytes), {len(res.present)} already present "
                      f"→ {escape(str(res.folder))}")


@app.command("list")
def list_(
    root: Path | None = typer.Option(None, help="Look only under this data root."),
) -> None:
    """List the named datasets and where each one is available locally.

    Example: embedarena data list
    """
    from embedarena.data.datasets import DATASETS, candidate_roots, locate

    table = Table(title="datasets")
    for col in ("name", "available", "where", "description"):
        table.add_column(col)
    for name, spec in DATASETS.items():
        found = locate(name, root)
        if found is None:
            table.add_row(name, "[red]no[/]", f"embedarena data fetch {name}",
                          escape(spec.description))
        else:
            table.add_row(name, "[green]yes[/]", escape(f"{found[0]}: {found[1]}"),
                          escape(spec.description))
    console.print(table)
    looked = ", ".join(f"{label} {base}" for label, base in candidate_roots(root))
    err_console.print(f"looked in: {escape(looked)}")


@app.command()
def inspect(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="File to check."),
    kind: str = typer.Option("auto", help="corpus, queries, train, or auto (from the file)."),
    corpus: Path | None = typer.Option(None, "--corpus", "-c", exists=True, dir_okay=False,
                                       help="With queries: list queries whose gold is not in "
                                            "this corpus."),
    column: str | None = typer.Option(None, help="Corpus CSV/XLSX column holding the text."),
    id_field: str | None = typer.Option(None, help="Corpus record field (or column) with ids."),
    text_field: str | None = typer.Option(None, help="Corpus record field with the text."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Count and skip bad records "
                                                            "instead of stopping at the first."),
    show: int = typer.Option(10, help="How many problem queries to list."),
    encoding: str | None = typer.Option(None, help="Encoding of a CSV/TSV file (default: "
                                        "detected: UTF-8, UTF-8 with BOM, or GBK/GB18030)."),
) -> None:
    """Check a corpus, query or training file and print what was found.

    Prints the format detected, counts read/loaded/skipped (with reasons), and, with --corpus,
    the queries whose gold labels are not in the corpus.

    Example: embedarena data inspect test.jsonl --corpus label.json --skip-bad
    """
    from embedarena.data import readers

    if kind not in KINDS:
        raise ConfigError(f"--kind must be one of {', '.join(KINDS)}, got '{kind}'")
    if kind == "auto":
        kind = readers.sniff_kind(path)
    if corpus is not None and kind != "queries":
        raise ConfigError("--corpus applies to query files (use --kind queries)")
    table = Table(title=f"{escape(str(path))} ({kind})", show_header=False)
    if kind == "corpus":
        docs, report = readers.load_corpus_with_report(path, column=column, id_field=id_field,
                                                       text_field=text_field,
                                                       skip_bad=skip_bad, encoding=encoding)
        _report_rows(table, report)
        table.add_row("documents", str(len(docs)))
        if docs.texts:
            lengths = [len(t) for t in docs.texts]
            table.add_row("text length (chars)", f"mean {sum(lengths) / len(lengths):.0f}, "
                                                 f"max {max(lengths)}")
        if docs.metadata:
            fields = sorted({k for m in docs.metadata for k in m})
            table.add_row("metadata fields", escape(", ".join(fields)))
        console.print(table)
    elif kind == "queries":
        qs, report = readers.load_queries_with_report(path, skip_bad=skip_bad,
                                                      encoding=encoding)
        _report_rows(table, report)
        table.add_row("queries", str(len(qs)))
        n_rel = [len(q.relevant) for q in qs]
        table.add_row("relevant labels per query",
                      f"mean {sum(n_rel) / max(1, len(n_rel)):.2f}, min {min(n_rel, default=0)},"
                      f" max {max(n_rel, default=0)}")
        grades = sorted({g for q in qs for g in q.gold.values()})
        table.add_row("grades", ", ".join(f"{g:g}" for g in grades))
        missing: dict[str, list[str]] = {}
        if corpus is not None:
            docs = readers.load_corpus(corpus, column=column, id_field=id_field,
                                       text_field=text_field, skip_bad=skip_bad)
            missing = readers.gold_not_in_corpus(docs, qs)
            twins = readers.whitespace_twins(docs, (g for ids in missing.values() for g in ids))
            table.add_row("corpus", f"{escape(str(corpus))} ({len(docs)} documents)")
            table.add_row("queries with gold not in the corpus", str(len(missing)))
            if twins:
                table.add_row("  gold off by surrounding whitespace", str(len(twins)))
        console.print(table)
        if missing:
            texts = {q.qid: q.text for q in qs}
            detail = Table(title="queries whose gold is not in the corpus")
            for col in ("qid", "query", "missing gold"):
                detail.add_column(col)
            for qid, ids in list(missing.items())[:show]:
                detail.add_row(escape(qid), escape(_short(texts[qid])),
                               escape(", ".join(_gold_cell(i, twins) for i in ids)))
            console.print(detail)
            if len(missing) > show:
                console.print(f"... and {len(missing) - show} more (--show N)")
    else:
        examples, report = readers.load_train_with_report(path, skip_bad=skip_bad)
        _report_rows(table, report)
        table.add_row("examples", str(len(examples)))
        if examples:
            n = len(examples)
            table.add_row("pos per example", f"mean {sum(len(e.pos) for e in examples) / n:.2f}")
            table.add_row("neg per example", f"mean {sum(len(e.neg) for e in examples) / n:.2f}")
            table.add_row("with teacher scores",
                          str(sum(e.pos_scores is not None for e in examples)))
            table.add_row("with a prompt", str(sum(e.prompt is not None for e in examples)))
        console.print(table)
    if report.examples:
        err_console.print(f"skipped {report.skipped_total} bad record(s); first ones:")
        for msg in report.examples:
            err_console.print(f"  {escape(msg)}", highlight=False)


def _report_rows(table: Table, report: LoadReport) -> None:
    table.add_row("format", escape(report.format))
    table.add_row(f"{report.unit}s read", str(report.read))
    table.add_row(f"{report.unit}s loaded", str(report.loaded))
    table.add_row(f"{report.unit}s skipped", str(report.skipped_total))
    for reason, count in sorted(report.skipped.items()):
        table.add_row(f"  skipped: {escape(reason)}", str(count))
    for note, count in sorted(report.notes.items()):
        table.add_row(escape(note), str(count))


def _gold_cell(label: str, twins: dict[str, str]) -> str:
    """A missing gold label, quoted when its whitespace matters (never collapsed away)."""
    from embedarena.data.readers import show_label

    if label in twins or label != " ".join(label.split()):
        return show_label(label if len(label) <= 40 else label[:39] + "…", twins.get(label))
    return _short(label, 40)


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
