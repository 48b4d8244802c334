"""report.xlsx reopened: sheets, cells, formats, highlights, text safety."""

from __future__ import annotations

import zipfile

import pytest
from openpyxl import load_workbook

from embedarena.evaluation.report.xlsx import SHEETS

from .conftest import NASTY_QUERY


@pytest.fixture(scope="module")
def wb(written_report):
    _, out = written_report
    return load_workbook(out / "report.xlsx")


def header(ws) -> list[str]:
    return [c.value for c in ws[1]]


def test_sheet_names_and_header_style(wb) -> None:
    assert wb.sheetnames == list(SHEETS)
    for name in ("Summary", "Per-query", "Per-label", "Settings"):
        ws = wb[name]
        assert ws.freeze_panes == "A2", name
        first = ws["A1"]
        assert first.font.bold and first.fill.fgColor.rgb.endswith("1F3A5F"), name
        assert ws.auto_filter.ref and ws.auto_filter.ref.startswith("A1:")
        assert ws.column_dimensions["A"].width >= 8


def test_summary_values_formats_and_best(wb, written_report) -> None:
    report, _ = written_report
    ws = wb["Summary"]
    cols = header(ws)
    assert cols[:5] == ["model", "query set", "queries", "scored", "excluded"]
    p1 = cols.index("precise@1") + 1
    mrr = cols.index("mrr@5") + 1
    rows = {(ws.cell(r, 1).value, ws.cell(r, 2).value): r for r in range(2, 8)}
    r = rows[("bge 微调", "原数据")]
    assert ws.cell(r, p1).value == pytest.approx(
        report.comparison.value("bge 微调", "原数据", "precise@1"))
    assert ws.cell(r, p1).number_format == "0.0%"
    assert ws.cell(r, mrr).number_format == "0.000"
    assert ws.cell(r, 3).value == 40 and ws.cell(r, 5).value == 1
    best = report.comparison.best("原数据", "precise@1")
    for (model, qs), row in rows.items():
        filled = ws.cell(row, p1).fill.fgColor.rgb.endswith("C6EFCE")
        assert filled == (qs == "原数据" and model in best or
                          qs == "新数据" and model in report.comparison.best("新数据",
                                                                              "precise@1"))
        assert ws.cell(row, p1).font.bold == filled


def test_significance_sheet(wb, written_report) -> None:
    report, _ = written_report
    ws = wb["Significance"]
    cols = header(ws)
    rows = [[c.value for c in row] for row in ws.iter_rows(min_row=2, max_row=13)]
    assert len(rows) == 12
    t = report.sets[0].significance[0]
    first = dict(zip(cols, rows[0], strict=True))
    assert (first["model"], first["metric"]) == (t.model, t.metric)
    assert first["p"] == pytest.approx(t.p_value)
    assert first["difference"] == pytest.approx(100 * t.diff)  # percentage points
    assert ws.cell(2, cols.index("difference") + 1).number_format.startswith("+0.0")
    methods = " ".join(str(c.value) for c in ws["A"] if c.value)
    assert "randomization" in methods and "bootstrap" in methods and "Holm" in methods


def test_per_query_sheet_keeps_user_text_as_text(wb) -> None:
    ws = wb["Per-query"]
    cols = header(ws)
    assert cols[:5] == ["query set", "qid", "query", "gold", "status"]
    assert "bge 微调: top 5" in cols and "acge: precise@1" in cols
    nasty = [row for row in ws.iter_rows(min_row=2) if row[2].value == NASTY_QUERY]
    assert len(nasty) == 2  # one per query set
    assert nasty[0][2].data_type == "s"  # a leading "=" is text, not a formula
    assert ws.max_row == 1 + 40 + 24
    top = cols.index("bge 微调: top 5")
    assert any("✓ " in (row[top].value or "") for row in ws.iter_rows(min_row=2))
    p1 = cols.index("acge: precise@1") + 1
    assert ws.cell(2, p1).number_format == "0.0%"


def test_per_label_and_confusions(wb) -> None:
    ws = wb["Per-label"]
    labels = [c.value for c in ws["B"][1:] if c.value]
    assert "甲状腺结节" in labels
    assert ws.cell(2, 5).number_format == "0.0%"
    conf = wb["Confusions"]
    assert header(conf)[:4] == ["query set", "gold label", "retrieved at rank 1 instead",
                                "total"]
    rows = [(r[0].value, r[3].value, [c.value for c in r[4:7]])
            for r in conf.iter_rows(min_row=2) if isinstance(r[3].value, int)]
    for qs in ("原数据", "新数据"):
        totals = [t for q, t, _ in rows if q == qs]
        assert totals and totals == sorted(totals, reverse=True)  # most frequent first
    assert all(t == sum(c) for _, t, c in rows)


def test_settings_sheet_has_facts_and_no_secrets(wb, written_report) -> None:
    _, out = written_report
    ws = wb["Settings"]
    pairs = {(r[0].value, r[3].value): r[4].value for r in ws.iter_rows(min_row=2)}
    assert pairs[("bge", "elasticsearch.version")] == "8.15.3"
    assert pairs[("bge", "model_settings.api_key")] == "[hidden]"
    assert pairs[("(report)", "resamples")] == "10000"
    with zipfile.ZipFile(out / "report.xlsx") as z:
        blob = "".join(z.read(n).decode("utf-8", "replace") for n in z.namelist())
    assert "sk-should-never-appear" not in blob and "hunter2" not in blob
