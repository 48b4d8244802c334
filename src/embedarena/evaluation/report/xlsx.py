"""report.xlsx: the full data behind the HTML report, formatted for people who live in Excel.

Sheets: Summary, Significance, Per-query, Per-label, Confusions, Settings. Each has a styled,
frozen header row with filters, sized columns, and metric values stored as numbers (0-1) shown
as percentages or 3-decimal scores, so sorting and formulas work on them. The best value per
metric and query set is highlighted on Summary.

User text is always written as text: a query starting with "=" never becomes a formula.
"""

from __future__ import annotations

import math
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from embedarena.evaluation.compare import UNITS_NOTE
from embedarena.evaluation.metrics import get_metric
from embedarena.evaluation.report.model import Report, query_keys

if TYPE_CHECKING:
    from openpyxl.worksheet.worksheet import Worksheet

SHEETS = ("Summary", "Significance", "Per-query", "Per-label", "Confusions", "Settings")
HEADER_FILL = PatternFill("solid", fgColor="1F3A5F")
HEADER_FONT = Font(bold=True, color="FFFFFF")
BEST_FILL = PatternFill("solid", fgColor="C6EFCE")
BEST_FONT = Font(bold=True, color="006100")
PERCENT = "0.0%"
SCORE = "0.000"
PP = '+0.0" pp";-0.0" pp";0.0" pp"'
SIGNED_SCORE = "+0.000;-0.000;0.000"
P_VALUE = "0.0000"
MAX_CELL = 32_000
MAX_WIDTH = 60
WIDTH_SAMPLE_ROWS = 500
"""Column widths are fitted to the first rows only: measuring every cell of a sheet with
thousands of queries costs seconds and rarely changes a width that is capped anyway."""


def _percent(column: str) -> bool:
    return get_metric(column.split("@", 1)[0]).percent


def _metric_format(column: str) -> str:
    return PERCENT if _percent(column) else SCORE


def _text(value: str) -> str:
    value = ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)
    return value if len(value) <= MAX_CELL else value[: MAX_CELL - 1] + "…"


def _width(value: Any) -> int:
    if value is None:
        return 0
    text = value if isinstance(value, str) else f"{value:.3f}" if isinstance(value, float) \
        else str(value)
    line = max(text.split("\n"), key=len) if text else ""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _table(ws: Worksheet, headers: list[str], rows: list[list[Any]],
           formats: list[str | None] | None = None, start_row: int = 1) -> None:
    """Header row (styled, frozen, filtered) and rows; strings always stay strings."""
    widths = [_width(h) for h in headers]
    for col, h in enumerate(headers, start=1):
        cell = ws.cell(row=start_row, column=col, value=_text(h))
        cell.data_type = "s"
        cell.fill = HEADER_FILL
        cell.font = HEADER_FONT
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
    for r, values in enumerate(rows, start=start_row + 1):
        for col, value in enumerate(values, start=1):
            value = _clean(value)
            if isinstance(value, str):
                cell = ws.cell(row=r, column=col, value=_text(value))
                cell.data_type = "s"  # "=..." from user data must not become a formula
            else:
                cell = ws.cell(row=r, column=col, value=value)
                fmt = formats[col - 1] if formats and col - 1 < len(formats) else None
                if fmt and isinstance(value, int | float) and not isinstance(value, bool):
                    cell.number_format = fmt
            if col - 1 < len(widths) and r <= start_row + WIDTH_SAMPLE_ROWS:
                widths[col - 1] = max(widths[col - 1], _width(value))
    for col, w in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(col)].width = min(MAX_WIDTH, max(8, w + 2))
    if start_row == 1:
        ws.freeze_panes = "A2"
        if headers:
            last = get_column_letter(len(headers))
            ws.auto_filter.ref = f"A1:{last}{max(1, len(rows) + 1)}"


def _notes(ws: Worksheet, lines: list[str], gap: int = 2) -> None:
    row = ws.max_row + gap
    for i, line in enumerate(lines):
        cell = ws.cell(row=row + i, column=1, value=_text(line))
        cell.data_type = "s"
        cell.font = Font(italic=True, color="555555")


def _summary(ws: Worksheet, report: Report) -> None:
    comp = report.comparison
    cols = list(dict.fromkeys(c for qs in comp.query_sets for c in comp.columns(qs)))
    headers = ["model", "query set", "queries", "scored", "excluded", *cols]
    rows: list[list[Any]] = []
    best_cells: list[tuple[int, int]] = []
    for row in comp.rows:
        m = row.metrics
        values: list[Any] = [row.model, row.query_set, m.n_queries, m.n_evaluated, m.n_excluded]
        for j, c in enumerate(cols):
            values.append(comp.value(row.model, row.query_set, c))
            if row.model in comp.best(row.query_set, c):
                best_cells.append((len(rows) + 2, 6 + j))
        rows.append(values)
    _table(ws, headers, rows, [None] * 5 + [_metric_format(c) for c in cols])
    for r, col in best_cells:
        ws.cell(row=r, column=col).fill = BEST_FILL
        ws.cell(row=r, column=col).font = BEST_FONT
    _notes(ws, [f"{UNITS_NOTE}. Values are stored as fractions (0-1).",
                "Green: best value of its metric on its query set.",
                "precise@k (seed 004): correct only when every gold label is in the top k.",
                *report.notes, *(n for s in report.sets for n in s.notes)])


def _significance(ws: Worksheet, report: Report) -> None:
    headers = ["query set", "model", "baseline", "metric", "n", "baseline mean", "model mean",
               "difference", "CI low", "CI high", "p", "p (Holm)", "exact", "wins", "ties",
               "losses", f"significant (Holm p < {report.options.alpha:g})"]
    rows: list[list[Any]] = []
    percent: list[bool] = []
    for s in report.sets:
        for t in [*s.significance, *s.stages]:  # two-stage rows: "baseline" = their retriever
            pct = _percent(t.metric)
            scale = 100.0 if pct else 1.0  # differences of percentages in percentage points
            rows.append([s.name, t.model, t.baseline, t.metric, t.n, t.baseline_mean,
                         t.model_mean, scale * t.diff, scale * t.ci_low, scale * t.ci_high,
                         t.p_value, t.p_holm, "yes" if t.exact else "no", t.wins, t.ties,
                         t.losses, "yes" if t.significant(report.options.alpha) else "no"])
            percent.append(pct)
    _table(ws, headers, rows)
    for i, pct in enumerate(percent, start=2):
        for col in (6, 7):
            ws.cell(row=i, column=col).number_format = PERCENT if pct else SCORE
        for col in (8, 9, 10):
            ws.cell(row=i, column=col).number_format = PP if pct else SIGNED_SCORE
        for col in (11, 12):
            ws.cell(row=i, column=col).number_format = P_VALUE
    if not rows:
        _notes(ws, ["No significance tests: they need a baseline and at least one other model "
                    "scored on the same queries."], gap=1)
    _notes(ws, ["Differences and CIs of percentage metrics are in percentage points (pp).",
                *report.methods])


def _per_query(ws: Worksheet, report: Report) -> None:
    specs = [str(s) for s in dict.fromkeys([*report.specs, *report.key_specs])]
    headers = ["query set", "qid", "query", "gold", "status"]
    formats: list[str | None] = [None] * 5
    for m in report.models:
        headers += [f"{m}: top {report.detail_k}", f"{m}: first hit rank"]
        formats += [None, "0"]
        headers += [f"{m}: {c}" for c in specs]
        formats += [_metric_format(c) for c in specs]
    rows = []
    for s in report.sets:
        index = {m: {k: i for i, k in enumerate(query_keys(e.metrics.qids))}
                 for m, e in s.entries.items()}
        for q in s.rows:
            values: list[Any] = [s.name, q.qid, q.query, " | ".join(q.gold), q.status]
            for m in report.models:
                h = q.models.get(m)
                e = s.entries.get(m)
                if h is None or e is None:
                    values += [None, None] + [None] * len(specs)
                    continue
                top = " | ".join(("✓ " if hit else "") + d for d, hit in h.top)
                values += [top, h.first_hit]
                idx = index[m].get(q.key)
                for c in specs:
                    v = float(e.metrics.values[c][idx]) if idx is not None else math.nan
                    values.append(v)
            rows.append(values)
    _table(ws, headers, rows, formats)
    if not rows:
        _notes(ws, ["No queries in these runs."], gap=1)


def _per_label(ws: Worksheet, report: Report) -> None:
    headers = ["query set", "gold label", "queries", "k"]
    headers += [f"{m}: found in top k" for m in report.models]
    formats: list[str | None] = [None, None, "0", "0"] + [PERCENT] * len(report.models)
    rows = []
    for s in report.sets:
        for lab in s.labels:
            rows.append([s.name, lab.label, lab.n_max, s.label_k,
                         *(lab.found.get(m, math.nan) for m in report.models)])
    _table(ws, headers, rows, formats)
    _notes(ws, ["Share of the queries with this gold label that have it in the top k "
                "(queries without relevant gold excluded); hardest labels first."])


def _confusions(ws: Worksheet, report: Report) -> None:
    headers = ["query set", "gold label", "retrieved at rank 1 instead", "total",
               *report.models]
    rows = []
    for s in report.sets:
        for c in s.confusions:
            rows.append([s.name, c.gold, c.retrieved, c.total,
                         *(c.counts.get(m, 0) if m in s.models else None
                           for m in report.models)])
    _table(ws, headers, rows, [None, None, None, "0"] + ["0"] * len(report.models))
    _notes(ws, ["Counted over queries whose rank-1 result is not a gold label: one count per "
                "(gold label, rank-1 label) pair and model."])


def _settings(ws: Worksheet, report: Report) -> None:
    headers = ["model", "query set", "run directory", "setting", "value"]
    rows: list[list[Any]] = []
    common = report.common_settings
    for rs in report.run_settings:
        for k, v in [*common, *rs.items]:
            rows.append([rs.label, rs.query_set, str(rs.path), k, v])
    o = report.options
    for k, v in [("report created", report.created), ("embedarena version", report.version),
                 ("headline metrics", ", ".join(map(str, report.specs))),
                 ("key metrics", ", ".join(map(str, report.key_specs))),
                 ("baseline", report.baseline or ""), ("resamples", str(o.resamples)),
                 ("confidence", str(o.confidence)), ("seed", str(o.seed))]:
        rows.append(["(report)", "", "", k, v])
    _table(ws, headers, rows)


def write_xlsx(report: Report, path: Path) -> Path:
    wb = Workbook()
    first = wb.active
    assert first is not None  # a new Workbook always has one sheet
    first.title = SHEETS[0]
    _summary(first, report)
    for name, fill in zip(SHEETS[1:], (_significance, _per_query, _per_label, _confusions,
                                       _settings), strict=True):
        fill(wb.create_sheet(name), report)
    wb.properties.creator = f"embedarena {report.version}"
    wb.properties.title = report.title
    wb.save(path)
    return path

