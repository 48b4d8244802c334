"""`data prepare` on small invented spreadsheets shaped like seed 004's disease.xlsx."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedarena.data.prepare import parse_test_size, prepare_spreadsheet
from embedarena.data.readers import load_corpus, load_queries, load_train
from embedarena.errors import ConfigError, DataError

openpyxl = pytest.importorskip("openpyxl")

# Header as in the seed: label columns repeat names (Label4 twice, Label twice).
HEADER = ["Question", "Thinking", "Label", "Label2", "Label4", "Label5", "Label4", "Label"]
ROWS = [
    ["甲状腺结节能买吗", "t", "甲状腺结节", "甲状腺癌", None, None, None, None],
    [None, "t", "胆管炎", None, None, None, None, None],  # empty question
    ["有高血压", "t", None, None, None, None, None, None],  # no label
    ["   ", None, "糖尿病", None, None, None, None, None],  # whitespace question
    [None, None, None, None, None, None, None, None],  # blank row
    ["肝硬化和糖尿病", "", " 肝硬化 ", None, "糖尿病", None, "肝硬化", None],
    ["子宫肌瘤有限制么", "", None, None, None, None, None, "子宫肌瘤"],  # 2nd "Label" column
    ["乳头状癌", "", "甲状腺癌", None, None, None, None, None],
    ["胰腺囊肿", "", "胰腺囊肿", None, None, None, None, None],
    ["宫颈上皮内瘤变", "", "宫颈上皮内瘤变", None, None, None, None, None],
    ["高血压和糖尿病", "", "高血压", "糖尿病", None, None, None, None],
]
LABELS = ["甲状腺结节", "甲状腺癌", "肝硬化", "糖尿病", "子宫肌瘤", "胰腺囊肿", "宫颈上皮内瘤变",
          "高血压"]


def _xlsx(path: Path, header: list[str] = HEADER, rows: list[list[object]] = ROWS) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(header)
    for r in rows:
        ws.append(r)
    wb.save(path)
    return path


def test_counts_in_equal_counts_out(tmp_path: Path) -> None:
    src = _xlsx(tmp_path / "disease.xlsx")
    res = prepare_spreadsheet(src, tmp_path / "out", negatives=3, test_size=2, seed=1)
    assert res.rows_read == 11
    assert res.dropped == {"empty question": 2, "no label": 1, "blank row": 1}
    assert (res.train, res.test) == (5, 2)
    assert res.balanced
    assert res.labels == len(LABELS)
    assert len(res.label_columns) == 6  # Label, Label2, Label4, Label5, Label4, Label
    train = load_train(res.outputs["train"])
    test = load_queries(res.outputs["test"])
    labels = load_corpus(res.outputs["labels"])
    assert len(train) == 5 and len(test) == 2
    assert labels.ids == LABELS  # first occurrence first
    rows = {e.query: e.pos for e in train} | {q.text: q.relevant for q in test}
    assert rows["肝硬化和糖尿病"] == ["肝硬化", "糖尿病"]  # stripped, deduped, in column order
    assert rows["子宫肌瘤有限制么"] == ["子宫肌瘤"]
    test_lines = res.outputs["test"].read_text(encoding="utf-8").splitlines()
    assert set(json.loads(test_lines[0])) == {"query", "pos"}


def test_negatives_are_never_positives(tmp_path: Path) -> None:
    src = _xlsx(tmp_path / "d.xlsx")
    res = prepare_spreadsheet(src, tmp_path / "o", negatives=5, test_size=0.3, seed=3)
    for ex in load_train(res.outputs["train"]):
        assert len(ex.neg) == 5
        assert not set(ex.neg) & set(ex.pos)
        assert set(ex.neg) <= set(LABELS)
        assert len(set(ex.neg)) == 5
    # more negatives than labels available: as many as exist, counted
    res = prepare_spreadsheet(src, tmp_path / "o2", negatives=50, test_size=1, seed=3)
    for ex in load_train(res.outputs["train"]):
        assert sorted(ex.neg) == sorted(set(LABELS) - set(ex.pos))
    assert res.rows_short_of_negatives == res.train


def test_seed_determinism(tmp_path: Path) -> None:
    src = _xlsx(tmp_path / "d.xlsx")
    outs = [prepare_spreadsheet(src, tmp_path / name, negatives=3, test_size=0.3, seed=seed)
            for name, seed in (("a", 5), ("b", 5), ("c", 6))]
    a, b, c = (o.outputs for o in outs)
    for key in ("train", "test", "labels"):
        assert a[key].read_bytes() == b[key].read_bytes()
    assert (a["train"].read_bytes(), a["test"].read_bytes()) != (
        c["train"].read_bytes(), c["test"].read_bytes())


def test_csv_with_same_shape(tmp_path: Path) -> None:
    lines = [",".join(HEADER)] + [",".join("" if c is None else str(c) for c in r) for r in ROWS]
    src = tmp_path / "d.csv"
    src.write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")  # Excel's BOM
    res = prepare_spreadsheet(src, tmp_path / "o", negatives=2, test_size=0.25, seed=0)
    assert res.rows_read == 11 and res.balanced
    assert (res.train, res.test) == (5, 2)  # round(7 * 0.25) = 2


def test_configurable_columns(tmp_path: Path) -> None:
    src = _xlsx(tmp_path / "d.xlsx", ["问题", "标签", "标签2"],
                [["a", "x", "y"], ["b", "y", None], ["c", None, None]])
    res = prepare_spreadsheet(src, tmp_path / "o", question_column="问题", label_prefix="标签",
                              negatives=1, test_size=1, seed=0)
    assert res.dropped == {"no label": 1} and res.train + res.test == 2


def test_header_problems_name_the_file(tmp_path: Path) -> None:
    src = _xlsx(tmp_path / "nolabel.xlsx", ["Question", "Answer"], [["a", "b"]])
    with pytest.raises(DataError, match=r"nolabel\.xlsx:row 1: no label columns"):
        prepare_spreadsheet(src, tmp_path / "o")
    src = _xlsx(tmp_path / "noq.xlsx", ["Query", "Label"], [["a", "b"]])
    with pytest.raises(DataError, match=r"noq\.xlsx:row 1: no question column 'Question'"):
        prepare_spreadsheet(src, tmp_path / "o")
    src = _xlsx(tmp_path / "twoq.xlsx", ["Question", "Label", "Question"], [["a", "b", "c"]])
    with pytest.raises(DataError, match=r"appears 2 times \(columns A, C\)"):
        prepare_spreadsheet(src, tmp_path / "o")
    src = _xlsx(tmp_path / "few.xlsx", ["Question", "Label"], [["a", "x"], ["b", None]])
    with pytest.raises(DataError, match="need at least 2 usable rows"):
        prepare_spreadsheet(src, tmp_path / "o")


def test_test_size_parsing(tmp_path: Path) -> None:
    assert parse_test_size("0.1") == 0.1
    assert parse_test_size("234") == 234
    for bad in ("0", "-1", "1.5", "ten"):
        with pytest.raises(ConfigError):
            parse_test_size(bad)
    src = _xlsx(tmp_path / "d.xlsx")
    with pytest.raises(ConfigError, match="leaves no training rows"):
        prepare_spreadsheet(src, tmp_path / "o", test_size=7)


def _csv_lines() -> list[str]:
    return [",".join(HEADER)] + [",".join("" if c is None else str(c) for c in r) for r in ROWS]


def test_gbk_csv_as_excel_saves_it(tmp_path: Path) -> None:
    src = tmp_path / "d.csv"
    src.write_bytes(("\r\n".join(_csv_lines()) + "\r\n").encode("gbk"))
    res = prepare_spreadsheet(src, tmp_path / "o", negatives=2, test_size=2, seed=0)
    assert res.rows_read == 11 and res.balanced
    assert res.dropped == {"empty question": 2, "no label": 1, "blank row": 1}
    assert load_corpus(res.outputs["labels"]).ids == LABELS  # the Chinese text survived
    same = prepare_spreadsheet(src, tmp_path / "o2", negatives=2, test_size=2, seed=0,
                               encoding="gb18030")
    assert same.outputs["train"].read_bytes() == res.outputs["train"].read_bytes()
    # forced UTF-8: the (ASCII) header reads, the first Chinese row stops the run, named
    with pytest.raises(DataError, match=r"d\.csv:line 2: not valid UTF-8"):
        prepare_spreadsheet(src, tmp_path / "o3", encoding="utf-8")


def test_formula_without_cached_value_names_the_row(tmp_path: Path) -> None:
    rows: list[list[object]] = [list(r) for r in ROWS]
    rows[7][2] = "=C2"  # row 9 (Excel numbering): its label is a formula nobody calculated
    src = _xlsx(tmp_path / "f.xlsx", rows=rows)
    with pytest.raises(DataError, match=r"f\.xlsx:row 9: formula without a cached value in C9"):
        prepare_spreadsheet(src, tmp_path / "o")
