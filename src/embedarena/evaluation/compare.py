"""Side-by-side tables of models × metrics, one table per query set (seed 004's slide table).

Layout: one table per query set (seed 004 compares "原数据" and "新数据"), rows = models,
columns = metrics. Separate tables read better than one wide table with grouped headers, which
neither Markdown nor a terminal can span; every table lists every model, so a model that was not
run on a query set shows empty cells and the rows still line up.

Display: precise/hit/recall/precision (shares of queries or documents) as percentages with one
decimal, like the seed's 42.7; mrr/map/ndcg as 0-1 scores with three decimals, like seed 000's
MAP 0.667. The best value in each column is marked (bold in Markdown, highlighted in the
terminal), compared at the displayed precision so equal-looking values are marked alike.
CSV and JSON carry the unrounded 0-1 values.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedarena.errors import ConfigError, DataError
from embedarena.evaluation.metrics import (
    MetricSpec,
    RunMetrics,
    evaluate,
    get_metric,
    parse_metrics,
)
from embedarena.evaluation.run import Run

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import RenderableType
    from rich.table import Table

UNITS_NOTE = "precise/hit/recall/precision in %; mrr/map/ndcg as scores from 0 to 1"
ANN_NOTE = ("ann@k: share of the exact top k that the HNSW index returned (in %; blank: exact "
            "or lexical index)")


def _metric_name(column: str) -> str:
    return column.split("@", 1)[0]


def format_value(column: str, value: float | None) -> str:
    """Display form of a 0-1 value for a metric column (`precise@1` → '42.7'); '' if missing."""
    if value is None or math.isnan(value):
        return ""
    if get_metric(_metric_name(column)).percent:
        return f"{100 * value:.1f}"
    return f"{value:.3f}"


@dataclass(frozen=True)
class MetaColumn:
    """A column read from a run's meta.json (cost and latency, `embedarena.evaluation.costs`)."""

    name: str
    path: tuple[str, ...]
    help: str
    scale: float = 1.0
    integer: bool = False

    def value(self, meta: Mapping[str, Any] | None) -> float | None:
        node: Any = meta
        for key in self.path:
            if not isinstance(node, Mapping) or key not in node:
                return None
            node = node[key]
        if isinstance(node, bool) or not isinstance(node, (int, float)):
            return None
        return float(node) * self.scale

    def format(self, value: float | None) -> str:
        if value is None or math.isnan(value):
            return ""
        if self.integer:
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"


#: `compare --columns`: what each run records beside its metrics (absent: empty cell).
META_COLUMNS: dict[str, MetaColumn] = {c.name: c for c in (
    MetaColumn("embed_ms", ("latency", "embed_query", "p50_ms"),
               "query embedding ms per query, p50 (batch time / batch size)"),
    MetaColumn("embed_p95_ms", ("latency", "embed_query", "p95_ms"),
               "query embedding ms per query, p95"),
    MetaColumn("embed_batch_ms", ("latency", "embed_batch", "p50_ms"),
               "query embedding ms per batch, p50"),
    MetaColumn("embed_batch_p95_ms", ("latency", "embed_batch", "p95_ms"),
               "query embedding ms per batch, p95"),
    MetaColumn("search_ms", ("latency", "search_query", "p50_ms"),
               "search ms per query, p50 (Elasticsearch took; faiss: round time / size)"),
    MetaColumn("search_p95_ms", ("latency", "search_query", "p95_ms"),
               "search ms per query, p95"),
    MetaColumn("search_batch_ms", ("latency", "search_batch", "p50_ms"),
               "search ms per _msearch round (client side), p50"),
    MetaColumn("search_batch_p95_ms", ("latency", "search_batch", "p95_ms"),
               "search ms per _msearch round, p95"),
    MetaColumn("index_mb", ("index_size", "bytes"),
               "index size in MB (Elasticsearch primary store; faiss in memory)", 1e-6),
    MetaColumn("bytes_per_vector", ("index_size", "bytes_per_vector"),
               "index bytes per document", integer=True),
    MetaColumn("tokens", ("api", "tokens_sent"), "tokens sent to the API (queries)",
               integer=True),
    MetaColumn("price", ("cost", "usd_per_1m_tokens"), "USD per 1M tokens (price table)"),
    MetaColumn("cost_usd", ("cost", "usd"), "USD for the tokens sent (empty: no price)"),
)}
#: Shorthands `--columns` also takes.
COLUMN_GROUPS = {
    "latency": ["embed_ms", "embed_p95_ms", "search_ms", "search_p95_ms"],
    "size": ["index_mb", "bytes_per_vector"],
    "cost": ["tokens", "price", "cost_usd"],
}


def parse_columns(text: str | Iterable[str]) -> list[str]:
    """`embed_ms,search_p95_ms,cost` → the meta column names, groups expanded, in order."""
    items = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    out: dict[str, None] = {}
    for item in items:
        if not item:
            continue
        if item in COLUMN_GROUPS:
            out.update(dict.fromkeys(COLUMN_GROUPS[item]))
        elif item in META_COLUMNS:
            out[item] = None
        else:
            raise ConfigError(f"unknown column {item!r}; columns: "
                              f"{', '.join([*META_COLUMNS, *COLUMN_GROUPS])}")
    return list(out)


@dataclass(frozen=True)
class Row:
    model: str
    query_set: str
    metrics: RunMetrics
    ann: dict[str, Any] | None = None
    """The run's `ann_check` (HNSW vs exact top-k overlap), when it has one."""
    meta: Mapping[str, Any] | None = None
    """The run's meta.json, where `extra` columns (latency, size, cost) are read."""


class Comparison:
    """Results of several models on one or more query sets, rendered as tables and files."""

    def __init__(self, rows: Iterable[tuple[str, str, RunMetrics]] = (),
                 extra: Iterable[str] = ()) -> None:
        self._rows: dict[tuple[str, str], Row] = {}
        #: meta columns (`META_COLUMNS`) shown after the metrics; none by default
        self.extra: list[str] = parse_columns(list(extra))
        for model, query_set, metrics in rows:
            self.add(model, query_set, metrics)

    def add(self, model: str, query_set: str, metrics: RunMetrics,
            ann: dict[str, Any] | None = None,
            meta: Mapping[str, Any] | None = None) -> None:
        """Add one model's results on one query set; the same pair twice is a mistake.

        `ann` is the run's `meta["ann_check"]`: shown as an `ann@k` column, so approximate
        search error is visible next to the model's scores. `meta` is the whole meta.json,
        for the `extra` columns."""
        key = (model, query_set)
        if key in self._rows:
            raise ConfigError(f"model {model!r} on query set {query_set!r} was given twice")
        self._rows[key] = Row(model, query_set, metrics, ann if ann else None, meta)

    def extra_value(self, model: str, query_set: str, column: str) -> float | None:
        """A meta column's value for a row (None: not recorded, e.g. no price)."""
        row = self._rows.get((model, query_set))
        return None if row is None else META_COLUMNS[column].value(row.meta)

    def extra_text(self, model: str, query_set: str, column: str) -> str:
        return META_COLUMNS[column].format(self.extra_value(model, query_set, column))

    def ann_column(self, query_set: str) -> str | None:
        """`ann@k` when some run of this query set has an ANN check, else None."""
        ks = sorted({int(r.ann.get("k", 0)) for r in self._rows.values()
                     if r.query_set == query_set and r.ann})
        return f"ann@{ks[-1]}" if ks else None

    def ann_value(self, model: str, query_set: str) -> str:
        row = self._rows.get((model, query_set))
        if row is None or not row.ann:
            return ""
        if row.ann.get("overlap") is None:
            return "n/a"  # the check could not run (its error is in the run's meta.json)
        return f"{100 * float(row.ann['overlap']):.1f}"

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def rows(self) -> list[Row]:
        return list(self._rows.values())

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(r.model for r in self._rows.values()))

    @property
    def query_sets(self) -> list[str]:
        return list(dict.fromkeys(r.query_set for r in self._rows.values()))

    def columns(self, query_set: str) -> list[str]:
        """Metric columns of a query set: every metric any model has there, first-seen order."""
        cols: dict[str, None] = {}
        for r in self._rows.values():
            if r.query_set == query_set:
                cols.update(dict.fromkeys(r.metrics.means))
        return list(cols)

    def value(self, model: str, query_set: str, column: str) -> float | None:
        """The mean, or None where that model has no result (not run, or nothing to average)."""
        row = self._rows.get((model, query_set))
        if row is None:
            return None
        v = row.metrics.means.get(column)
        return None if v is None or math.isnan(v) else v

    def best(self, query_set: str, column: str) -> list[str]:
        """Models with the best displayed value; none when fewer than two models have a value."""
        shown = {m: format_value(column, self.value(m, query_set, column)) for m in self.models}
        present = {m: float(s) for m, s in shown.items() if s}
        if len(present) < 2:
            return []
        top = max(present.values())
        return [m for m, v in present.items() if v == top]

    def _caption(self, query_set: str) -> tuple[str, bool]:
        """Title text and whether rows need their own `n` column (models saw different counts)."""
        rows = [r.metrics for r in self._rows.values() if r.query_set == query_set]
        counts = {(m.n_evaluated, m.n_excluded) for m in rows}
        name = query_set or "queries"
        if len(counts) == 1:
            n_eval, n_excl = next(iter(counts))
            text = f"{name}: {n_eval} queries"
            if n_excl:
                text += f" ({n_excl} without relevant gold excluded)"
            return text, False
        text = f"{name}: models were scored on different numbers of queries (see n)"
        if any(m.n_excluded for m in rows):
            text += "; queries without relevant gold are excluded"
        return text, True

    # --- renderings -----------------------------------------------------------------------

    def to_rich_tables(self) -> list[Table]:
        from rich.table import Table
        from rich.text import Text

        tables = []
        for qs in self.query_sets:
            cols = self.columns(qs)
            title, with_n = self._caption(qs)
            table = Table(title=Text(title), caption=UNITS_NOTE + "; best per column highlighted",
                          title_justify="left", caption_justify="left")
            table.add_column("model", style="bold")
            if with_n:
                table.add_column("n", justify="right")
            for c in cols:
                table.add_column(Text(c), justify="right")
            ann_col = self.ann_column(qs)
            if ann_col:
                table.add_column(Text(ann_col), justify="right", style="dim")
                table.caption = UNITS_NOTE + "; best per column highlighted; " + ANN_NOTE
            for c in self.extra:
                table.add_column(Text(c), justify="right", style="cyan")
            best = {c: set(self.best(qs, c)) for c in cols}
            for m in self.models:
                # Text, not str: model names like "bge [run2]" must not be read as markup
                cells = [Text(m)]
                if with_n:
                    row = self._rows.get((m, qs))
                    cells.append(Text(str(row.metrics.n_evaluated) if row else ""))
                for c in cols:
                    text = format_value(c, self.value(m, qs, c))
                    cells.append(Text(text, style="bold green" if m in best[c] else ""))
                if ann_col:
                    cells.append(Text(self.ann_value(m, qs)))
                cells.extend(Text(self.extra_text(m, qs, c)) for c in self.extra)
                table.add_row(*cells)
            tables.append(table)
        return tables

    def to_rich_table(self) -> RenderableType:
        """One table per query set (a single Table when there is one set) for console.print."""
        from rich.console import Group

        tables = self.to_rich_tables()
        return tables[0] if len(tables) == 1 else Group(*tables)

    def to_markdown(self) -> str:
        parts = []
        for qs in self.query_sets:
            cols = self.columns(qs)
            title, with_n = self._caption(qs)
            ann_col = self.ann_column(qs)
            head = ["model", *(["n"] if with_n else []), *cols, *([ann_col] if ann_col else []),
                    *self.extra]
            lines = [f"### {_md(title)}", "",
                     "| " + " | ".join(_md(h) for h in head) + " |",
                     "|" + "---|" + "---:|" * (len(head) - 1)]
            best = {c: set(self.best(qs, c)) for c in cols}
            for m in self.models:
                cells = [_md(m)]
                if with_n:
                    row = self._rows.get((m, qs))
                    cells.append(str(row.metrics.n_evaluated) if row else "")
                for c in cols:
                    text = format_value(c, self.value(m, qs, c))
                    cells.append(f"**{text}**" if m in best[c] else text)
                if ann_col:
                    cells.append(self.ann_value(m, qs))
                cells.extend(self.extra_text(m, qs, c) for c in self.extra)
                lines.append("| " + " | ".join(cells) + " |")
            parts.append("\n".join(lines))
        body = "\n\n".join(parts)
        ann = any(self.ann_column(qs) for qs in self.query_sets)
        extra = "".join(f" {c}: {META_COLUMNS[c].help}." for c in self.extra)
        return (f"{body}\n\n{UNITS_NOTE}. Bold: best in its column."
                + (f" {ANN_NOTE}." if ann else "") + extra + "\n")

    def to_csv(self) -> str:
        """One line per (model, query set) with unrounded 0-1 values; empty where not computed."""
        cols = list(dict.fromkeys(c for qs in self.query_sets for c in self.columns(qs)))
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        ann = any(r.ann for r in self._rows.values())
        w.writerow(["model", "query_set", "n_queries", "n_evaluated", "n_excluded", *cols,
                    *(["ann_k", "ann_overlap"] if ann else []), *self.extra])
        for r in self._rows.values():
            vals = [self.value(r.model, r.query_set, c) for c in cols]
            extra = ([r.ann.get("k", ""), repr(r.ann.get("overlap"))] if r.ann else ["", ""]
                     ) if ann else []
            w.writerow([r.model, r.query_set, r.metrics.n_queries, r.metrics.n_evaluated,
                        r.metrics.n_excluded, *("" if v is None else repr(v) for v in vals),
                        *extra, *("" if (x := self.extra_value(r.model, r.query_set, c))
                                  is None else repr(x) for c in self.extra)])
        return buf.getvalue()

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict: rows with unrounded values, plus the best models per column."""
        return {
            "models": self.models,
            "query_sets": self.query_sets,
            "rows": [{
                "model": r.model, "query_set": r.query_set,
                "n_queries": r.metrics.n_queries, "n_evaluated": r.metrics.n_evaluated,
                "n_excluded": r.metrics.n_excluded,
                "metrics": {c: self.value(r.model, r.query_set, c) for c in r.metrics.means},
                **({"ann_check": r.ann} if r.ann else {}),
                **({"columns": {c: self.extra_value(r.model, r.query_set, c)
                                for c in self.extra}} if self.extra else {}),
            } for r in self._rows.values()],
            "best": {qs: {c: self.best(qs, c) for c in self.columns(qs)}
                     for qs in self.query_sets},
        }

    def to_pandas(self, query_set: str | None = None) -> pd.DataFrame:
        """Models × metrics with unrounded 0-1 values (NaN where not computed): indexed by
        (query_set, model), or by model for one `query_set`."""
        import pandas as pd

        cols = list(dict.fromkeys(c for qs in self.query_sets for c in self.columns(qs)))
        records = [{"query_set": r.query_set, "model": r.model,
                    **{c: self.value(r.model, r.query_set, c) for c in cols}}
                   for r in self._rows.values()]
        frame = pd.DataFrame.from_records(records, columns=["query_set", "model", *cols])
        frame[cols] = frame[cols].astype(float)
        frame = frame.set_index(["query_set", "model"])
        if query_set is None:
            return frame
        if query_set not in self.query_sets:
            raise ConfigError(f"no query set {query_set!r}; sets: {self.query_sets}")
        one = frame.xs(query_set, level="query_set")
        return one[self.columns(query_set)]

    def _repr_html_(self) -> str:
        """A notebook shows the comparison as its tables (displayed units, best in bold)."""
        import html

        parts = []
        for qs in self.query_sets:
            cols = self.columns(qs)
            title, _ = self._caption(qs)
            best = {c: set(self.best(qs, c)) for c in cols}
            head = "".join(f"<th>{html.escape(c)}</th>" for c in ["model", *cols])
            body = []
            for m in self.models:
                cells = [f"<td>{html.escape(m)}</td>"]
                for c in cols:
                    text = html.escape(format_value(c, self.value(m, qs, c)))
                    cells.append(f"<td><b>{text}</b></td>" if m in best[c] else f"<td>{text}</td>")
                body.append("<tr>" + "".join(cells) + "</tr>")
            parts.append(f"<table><caption>{html.escape(title)}</caption><thead><tr>{head}"
                         f"</tr></thead><tbody>{''.join(body)}</tbody></table>")
        return "".join(parts) + f"<p><small>{html.escape(UNITS_NOTE)}</small></p>"

    def save(self, out_dir: Path) -> list[Path]:
        """Write comparison.md, comparison.csv and comparison.json into out_dir."""
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            paths = [out_dir / "comparison.md", out_dir / "comparison.csv",
                     out_dir / "comparison.json"]
            paths[0].write_text(self.to_markdown(), encoding="utf-8")
            # utf-8-sig so Excel opens Chinese model/query-set names correctly
            paths[1].write_text(self.to_csv(), encoding="utf-8-sig")
            paths[2].write_text(json.dumps(self.to_json(), ensure_ascii=False, indent=2) + "\n",
                                encoding="utf-8")
        except OSError as e:
            raise DataError(out_dir, f"cannot write the comparison: {e.strerror or e}") from e
        return paths


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Each path is a run directory (has run.jsonl) or a folder searched for them, so
    `compare runs/exp1` picks up every model and query set an experiment wrote."""
    found: dict[Path, None] = {}
    for p in paths:
        if not p.exists():
            raise DataError(p, "no such file or directory")
        if (p / "run.jsonl").is_file():
            found[p] = None
            continue
        if not p.is_dir():
            raise DataError(p, "not a run directory (expected a folder with run.jsonl)")
        below = sorted(f.parent for f in p.rglob("run.jsonl") if f.is_file())
        if not below:
            raise DataError(p, "no run.jsonl here or below: not a run directory")
        found.update(dict.fromkeys(below))
    return list(found)


#: Run metadata that says which inputs a run scored: (meta key, what it names).
INPUT_KEYS = (("corpus_sha256", "corpus"), ("queries_sha256", "query file"))
MIXED_HINT = ("compare runs made from one corpus and one query file (re-run the stale ones), "
              "or pass --allow-mixed to show them with their inputs marked")


def mixed_inputs(runs: Iterable[tuple[str, str, Mapping[str, Any]]],
                 ) -> dict[tuple[str, str], list[str]]:
    """Where one query set's runs were made from different corpora or query files.

    `runs` are (label, query set, meta.json). The answer maps (label, query set) to marks such
    as `corpus 1a2b3c4d` for every run of a query set whose table would otherwise mix inputs
    without a word (a run whose meta records no hash is marked `corpus not recorded`); empty
    when each query set's runs agree. Different query sets may come from different corpora:
    each is its own table.
    """
    by_set: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for label, qs, meta in runs:
        by_set.setdefault(qs, []).append((label, meta))
    marks: dict[tuple[str, str], list[str]] = {}
    for qs, items in by_set.items():
        for key, what in INPUT_KEYS:
            known = {str(meta[key]) for _, meta in items if meta.get(key)}
            if len(known) < 2:
                continue
            for label, meta in items:
                sha = meta.get(key)
                marks.setdefault((label, qs), []).append(
                    f"{what} {str(sha)[:8]}" if sha else f"{what} not recorded")
    return marks


def describe_mixed(marks: Mapping[tuple[str, str], list[str]]) -> list[str]:
    """One line per query set with mixed inputs: which runs used which inputs."""
    by_set: dict[str, dict[str, list[str]]] = {}
    for (label, qs), ms in marks.items():
        by_set.setdefault(qs, {}).setdefault(", ".join(ms), []).append(label)
    return [f"query set {qs or 'queries'!r} mixes inputs: "
            + "; ".join(f"{inputs}: {', '.join(labels)}" for inputs, labels in groups.items())
            for qs, groups in by_set.items()]


def refuse_mixed(marks: Mapping[tuple[str, str], list[str]], hint: str = MIXED_HINT) -> None:
    """A `ConfigError` naming the runs when query sets mix corpora or query files."""
    if marks:
        raise ConfigError("runs from different inputs in one table: "
                          + " | ".join(describe_mixed(marks)) + f"; {hint}")


def load_run_dir(path: Path,
                 specs: str | Iterable[str | MetricSpec] | None = None) -> tuple[Run, RunMetrics]:
    """Read a run directory written by `Run.save` (+ `RunMetrics.save`).

    The saved metrics.json is used when it covers what is asked (by default: whatever it holds)
    and matches the run's queries; otherwise the metrics are recomputed from run.jsonl, which is
    the source of truth. Without metrics.json and specs, the default metrics are computed.
    """
    from embedarena.evaluation.metrics import DEFAULT_METRICS

    run = Run.load(path)
    wanted = parse_metrics(specs) if specs is not None else None
    mpath = path / "metrics.json"
    if mpath.exists():
        saved = RunMetrics.load(mpath)
        qids = [r.qid for r in run.results]
        fresh = saved.has_per_query and saved.qids == qids or (
            not saved.has_per_query and saved.n_queries == len(qids))
        if fresh and (wanted is None or set(wanted) <= set(saved.specs)):
            if wanted is not None:
                saved = _select(saved, wanted)
            saved.model, saved.query_set = run.model, run.query_set
            return run, saved
        if wanted is None:
            wanted = saved.specs or parse_metrics(DEFAULT_METRICS)
    return run, evaluate(run, wanted if wanted is not None else DEFAULT_METRICS)


def _select(m: RunMetrics, specs: list[MetricSpec]) -> RunMetrics:
    """The same results restricted to (and ordered by) `specs`."""
    keys = [str(s) for s in specs]
    return RunMetrics(model=m.model, query_set=m.query_set, specs=list(specs), qids=m.qids,
                      values={k: m.values[k] for k in keys if k in m.values},
                      excluded=m.excluded, means={k: m.means[k] for k in keys},
                      summary_only=m.summary_only, ties=m.ties, tied=m.tied)
