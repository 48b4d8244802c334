"""CSV/TSV/XLSX through pandas: encodings, the header, bad rows by file:line, formula cells,
big cells. Counts always: read == loaded + skipped, and the header is never a record."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from embedarena.data.readers import (
    LoadReport,
    detect_encoding,
    load_corpus,
    load_corpus_with_report,
    load_queries_with_report,
    read_table,
)
from embedarena.errors import ConfigError, DataError

openpyxl = pytest.importorskip("openpyxl")

LABELS = ["甲状腺癌", "胆管炎", "高血压"]
HEADER = "编号,标签"  # not "label": the column is found by its Chinese name
GBK_LINES = [HEADER] + [f"A{i},{label}" for i, label in enumerate(LABELS, 1)]


def _balanced(report: LoadReport) -> None:
    assert report.read == report.loaded + report.skipped_total


def _gbk_csv(path: Path) -> Path:
    path.write_bytes(("\r\n".join(GBK_LINES) + "\r\n").encode("gbk"))  # as Excel saves it
    return path


# -- encodings -------------------------------------------------------------------------------
def test_detect_encoding_rule() -> None:
    text = "疾病,标签\n"
    assert detect_encoding(b"\xef\xbb\xbf" + text.encode("utf-8")) == "utf-8-sig"
    assert detect_encoding(text.encode("utf-8")) == "utf-8"
    assert detect_encoding(b"plain ascii\n") == "utf-8"
    assert detect_encoding(text.encode("gbk")) == "gb18030"
    assert detect_encoding(text.encode("gb18030")) == "gb18030"
    assert detect_encoding(b"ok\n\xff\xfe\xff\n") is None  # neither


def test_gbk_csv_loads_chinese_text_with_skip_bad(tmp_path: Path) -> None:
    p = _gbk_csv(tmp_path / "labels.csv")
    for skip_bad in (False, True):
        corpus, report = load_corpus_with_report(p, column="标签", id_field="编号",
                                                 skip_bad=skip_bad)
        assert corpus.ids == ["A1", "A2", "A3"]
        assert corpus.texts == LABELS
        # the header is the header: not skipped, not a record, not replaced by a data row
        assert (report.read, report.loaded, report.skipped) == (3, 3, {})
        assert report.format == "csv (GB18030) column '标签'"


def test_explicit_encoding(tmp_path: Path) -> None:
    p = _gbk_csv(tmp_path / "labels.csv")
    corpus, report = load_corpus_with_report(p, column="标签", encoding="GBK")
    assert corpus.texts == LABELS
    assert report.format == "csv (GBK) column '标签'"
    # UTF-8 forced on a GBK file: the header cannot be read, which stops the load even with
    # skip_bad (it is never skipped, nor is the first data row taken as the header)
    for skip_bad in (False, True):
        with pytest.raises(DataError, match=r"labels\.csv:line 1: the header is not valid UTF-8"):
            load_corpus(p, column="标签", encoding="utf-8", skip_bad=skip_bad)
    with pytest.raises(ConfigError, match="unknown encoding 'klingon'"):
        load_corpus(p, encoding="klingon")
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('{"text": "a"}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="encoding= applies to"):
        load_corpus(jsonl, encoding="gbk")


def test_utf8_bom_csv(tmp_path: Path) -> None:
    p = tmp_path / "bom.csv"
    p.write_bytes(b"\xef\xbb\xbf" + "label,code\n甲状腺癌,1\n胆管炎,2\n".encode())
    corpus, report = load_corpus_with_report(p)  # finds 'label': the BOM is not in the header
    assert corpus.ids == ["甲状腺癌", "胆管炎"]
    assert corpus.metadata == [{"code": "1"}, {"code": "2"}]
    assert report.format == "csv column 'label'"
    assert read_table(p).header == ["label", "code"]
    assert read_table(p, encoding="utf-8").header == ["label", "code"]


def test_undecodable_lines_counted_and_header_kept(tmp_path: Path) -> None:
    # neither UTF-8 nor GB18030 (0xff is invalid in both): read as UTF-8, bad lines named
    p = tmp_path / "mixed.csv"
    p.write_bytes("label\n甲状腺癌\n".encode() + b"\xff\xfe\n" + "胆管炎\n".encode()
                  + b"x\xff\n")
    with pytest.raises(DataError, match=r"mixed\.csv:line 3: not valid UTF-8 \(byte 0xff"):
        load_corpus(p)
    corpus, report = load_corpus_with_report(p, skip_bad=True)
    assert corpus.ids == ["甲状腺癌", "胆管炎"]
    assert (report.read, report.loaded, report.skipped) == (4, 2, {"not UTF-8": 2})
    _balanced(report)
    assert [e.split(": ")[0] for e in report.examples] == [f"{p}:line 3", f"{p}:line 5"]
    bad_header = tmp_path / "h.csv"
    bad_header.write_bytes(b"lab\xffel\nok\n")
    with pytest.raises(DataError, match=r"h\.csv:line 1: the header is .*pass encoding="):
        load_corpus(bad_header, skip_bad=True)


def test_gbk_graded_tsv_queries(tmp_path: Path) -> None:
    p = tmp_path / "graded.tsv"
    p.write_bytes("问题\t文档\t等级\n甲状腺\td1\t1\n胆管\td2\t0\n胆管\td3\t2\n".encode("gbk"))
    qs, report = load_queries_with_report(p)
    assert [q.text for q in qs] == ["甲状腺", "胆管"]
    assert report.notes == {"header line skipped": 1}
    assert (report.read, report.loaded) == (3, 3)
    with pytest.raises(DataError, match=r"graded\.tsv:line 1: the first line is not valid UTF-8"):
        load_queries_with_report(p, encoding="utf-8", skip_bad=True)


# -- rows named by file:line -----------------------------------------------------------------
def test_bad_rows_named_by_their_first_line(tmp_path: Path) -> None:
    # a quoted cell spanning lines 2-3 must not shift the numbers of later records
    p = tmp_path / "t.csv"
    p.write_text('label,code\n"two\nlines",1\nok,2\n"x,y",3\nbad,4,extra\ntrailing,5,\n'
                 "ok,6\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_corpus(p)
    assert str(e.value) == (f"{p}:line 6: 3 cells but the header has 2 (a delimiter inside an "
                            "unquoted cell?)")
    corpus, report = load_corpus_with_report(p, skip_bad=True)
    # a quoted delimiter is one cell; an extra empty cell (trailing comma) is harmless
    assert corpus.ids == ["two\nlines", "ok", "x,y", "trailing"]
    assert report.skipped == {"bad row": 1, "duplicate id": 1}
    assert "line 8: duplicate id 'ok' (first at line 4)" in report.examples[1]
    assert (report.read, report.loaded) == (6, 4)
    _balanced(report)


def test_unclosed_quote_names_its_line(tmp_path: Path) -> None:
    p = tmp_path / "q.csv"
    p.write_text('label\n"a\nb"\nc\n"never closed\nd\ne\n', encoding="utf-8")
    for skip_bad in (False, True):  # the rest of the file cannot be parsed: always an error
        with pytest.raises(DataError, match=r"q\.csv:line 5: malformed CSV: a quoted cell"):
            load_corpus(p, skip_bad=skip_bad)


def test_blank_first_line_is_not_skipped(tmp_path: Path) -> None:
    p = tmp_path / "b.csv"
    p.write_text("\nlabel\nx\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"b\.csv:line 1: the first line is blank"):
        load_corpus(p, skip_bad=True)


def test_200k_character_cell(tmp_path: Path) -> None:
    big = "长" * 100_000 + "x" * 100_000  # past the csv module's 131072 field limit
    p = tmp_path / "big.csv"
    p.write_text(f'label,code\n"{big}",1\nsmall,2\n', encoding="utf-8")
    corpus, report = load_corpus_with_report(p)
    assert [len(t) for t in corpus.texts] == [200_000, 5]
    assert corpus.texts[0] == big
    assert (report.read, report.loaded) == (2, 2)


# -- xlsx ------------------------------------------------------------------------------------
def _formula_xlsx(path: Path) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    for row in (["Question", "Label"], ["q1", "肝硬化"], ["q2", '=A2&"!"'], [None, None],
                ["q4", "高血压"], [None, "=1+1"]):  # row 6: only a formula, no value
        ws.append(row)
    wb.save(path)  # openpyxl stores formulas without cached values
    return path


def _with_cached_values(src: Path, dst: Path) -> Path:
    """As Excel would save it: B3 cached as text, B6 cached as the empty string."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                xml = data.decode("utf-8")
                for cell, formula, value in (("B3", 'A2&amp;"!"', "q1!"), ("B6", "1+1", "")):
                    old = f'<c r="{cell}"><f>{formula}</f><v /></c>'
                    assert old in xml
                    xml = xml.replace(old, f'<c r="{cell}" t="str"><f>{formula}</f>'
                                           f"<v>{value}</v></c>")
                data = xml.encode("utf-8")
            zout.writestr(item, data)
    return dst


def test_xlsx_formula_without_cached_value(tmp_path: Path) -> None:
    p = _formula_xlsx(tmp_path / "f.xlsx")
    with pytest.raises(DataError, match=r"f\.xlsx:row 3: formula without a cached value in B3"):
        load_corpus(p, column="Label")
    corpus, report = load_corpus_with_report(p, column="Label", skip_bad=True)
    assert corpus.ids == ["肝硬化", "高血压"]
    # neither is taken for a blank row, including the formula-only last row
    assert report.skipped == {"formula without cached value": 2}
    assert report.notes == {"blank rows ignored": 1}  # row 4 only
    assert [e.split(": ")[0] for e in report.examples] == [f"{p}:row 3", f"{p}:row 6"]
    assert (report.read, report.loaded) == (4, 2)
    _balanced(report)


def test_xlsx_cached_formula_values_load(tmp_path: Path) -> None:
    p = _with_cached_values(_formula_xlsx(tmp_path / "f.xlsx"), tmp_path / "cached.xlsx")
    corpus, report = load_corpus_with_report(p, column="Label")
    assert corpus.ids == ["肝硬化", "q1!", "高血压"]
    assert report.skipped == {}
    assert (report.read, report.loaded) == (3, 3)


def test_xlsx_values_and_sheet(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "first"
    ws.append(["label"])
    other = wb.create_sheet("codes")
    for row in (["Label", "n"], ["Label4", 3.0], ["x", 1.5], ["#N/A", None]):
        other.append(row)
    p = tmp_path / "two.xlsx"
    wb.save(p)
    table = read_table(p, sheet="codes")
    assert table.header == ["Label", "n"]
    assert list(table.rows) == [(2, ["Label4", "3"]), (3, ["x", "1.5"]), (4, ["#N/A", ""])]
    with pytest.raises(DataError, match=r"no sheet 'nope' \(sheets: first, codes\)"):
        read_table(p, sheet="nope")
    with pytest.raises(ConfigError):
        read_table(p, encoding="gbk")
