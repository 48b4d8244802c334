"""Property-based tests of every reader (issue 12, "Proof that stays").

Random files in every format the readers take (JSONL, JSON list, TXT/TSV graded pairs, CSV,
TSV and XLSX tables, training and reranking JSONL), built from random records mixed with the
inputs users really send: wrong types, broken lines, a UTF-8 BOM, CRLF line ends, GBK bytes,
lone surrogates, blank lines, huge and quoted cells. Whatever the file, with or without
`skip_bad`:

- the only exception is `DataError` (one line naming the file), never a crash;
- `read == loaded + skipped`, and nothing is skipped unless `skip_bad` was asked for;
- ids (query ids) are unique, texts are not blank, and every string is UTF-8-encodable, so
  hashing, the cache and Elasticsearch never fail on what a reader returned.

The number of examples comes from the Hypothesis profile (tests/conftest.py): `ci` (default,
bounded and derandomized) or `long` (`EMBEDARENA_HYPOTHESIS_PROFILE=long`).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedarena.data.readers import (
    LoadReport,
    load_corpus_with_report,
    load_queries_with_report,
    load_rerank_with_report,
    load_train_with_report,
)
from embedarena.data.types import Corpus, QuerySet
from embedarena.errors import DataError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # openpyxl on odd workbooks
FIXTURE_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                             HealthCheck.too_slow])

# -- strategies -------------------------------------------------------------------------------
# Most records are good and some are bad, so both the loaded and the skipped paths are taken
# (a file of only bad records just stops with "no usable records").
CHINESE = "甲状腺结节癌胆管炎胰腺囊肿宫颈上皮内瘤变疾病问题"
SAFE = st.sampled_from(list("abcxyz019 -_" + CHINESE))
TRICKY = st.sampled_from(list(",;\"'\t\r\n\\[]{}:\u3000\ufeff\x00\x85\u2028é😀"))
SURROGATE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)


def texts(tricky: bool = True, max_size: int = 12) -> st.SearchStrategy[str]:
    """Good text: not blank, mostly plain, sometimes with quotes, delimiters, line breaks."""
    alphabet = st.one_of(SAFE, SAFE, SAFE, TRICKY) if tricky else SAFE
    return st.text(alphabet=alphabet, min_size=1, max_size=max_size).filter(str.strip)


def bad_texts() -> st.SearchStrategy[Any]:
    """What a text field should not hold: blanks, lone surrogates, other JSON types."""
    surrogate = st.builds(lambda a, c, b: a + c + b, texts(max_size=4), SURROGATE,
                          st.text(SAFE, max_size=3))
    return st.one_of(st.sampled_from(["", " ", "\t\r\n", "\u3000"]), surrogate, json_values())


def json_values() -> st.SearchStrategy[Any]:
    """Any JSON value (strings possibly holding lone surrogates, written as escapes)."""
    leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(
        allow_nan=False, allow_infinity=False), st.text(st.one_of(SAFE, SURROGATE), max_size=4))
    return st.recursive(leaf, lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(
        st.text(SAFE, max_size=4), c, max_size=3)), max_leaves=6)


def sometimes_bad(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any],
                  odds: int = 6) -> st.SearchStrategy[Any]:
    """`good`, or one time in `odds` `bad`."""
    return st.integers(1, odds).flatmap(lambda n: bad if n == 1 else good)


def string_lists() -> st.SearchStrategy[Any]:
    item = sometimes_bad(texts(), bad_texts(), odds=12)
    return sometimes_bad(st.lists(item, min_size=1, max_size=4),
                         st.one_of(st.just([]), json_values(), texts()))


@st.composite
def corpus_records(draw: st.DrawFn, shape: str) -> Any:
    """One record of a corpus file whose records are all of one `shape`."""
    text = draw(sometimes_bad(texts(), bad_texts()))
    if shape == "label":
        return text
    rec: dict[str, Any] = {"content" if shape == "content" else "text": text}
    if shape in ("ids", "beir"):
        rec["_id" if shape == "beir" else "id"] = draw(sometimes_bad(
            st.one_of(st.text(SAFE, min_size=1, max_size=3), st.integers(0, 30)), json_values()))
    if shape == "beir":
        rec["title"] = draw(sometimes_bad(texts(), bad_texts()))
        rec["metadata"] = draw(st.dictionaries(st.text(SAFE, max_size=3), texts(), max_size=2))
    return draw(sometimes_bad(st.just(rec), json_values(), odds=12))


def corpus_files(container: Callable[..., st.SearchStrategy[bytes]]) -> st.SearchStrategy[bytes]:
    return st.sampled_from(["label", "plain", "ids", "beir", "content"]).flatmap(
        lambda shape: container(corpus_records(shape)))


@st.composite
def query_records(draw: st.DrawFn, gold: str, neg: str | None) -> Any:
    rec: dict[str, Any] = {"query": draw(sometimes_bad(texts(), bad_texts())),
                           gold: draw(string_lists())}
    if neg is not None:
        rec[neg] = draw(string_lists())
    if draw(st.integers(0, 3)) == 0:
        rec[draw(st.sampled_from(["id", "qid", "_id"]))] = draw(sometimes_bad(
            st.one_of(st.text(SAFE, min_size=1, max_size=2), st.integers(0, 9)), json_values()))
    if neg == "neg" and draw(st.integers(0, 3)) == 0:
        n = len(rec[gold]) if isinstance(rec[gold], list) else 1
        rec["pos_scores"] = draw(sometimes_bad(st.lists(st.floats(-1, 1), min_size=n,
                                                        max_size=n), json_values()))
    return draw(sometimes_bad(st.just(rec), json_values(), odds=12))


def query_files(container: Callable[..., st.SearchStrategy[bytes]],
                formats: tuple[tuple[str, str | None], ...]) -> st.SearchStrategy[bytes]:
    """Files whose first record's keys decide the format, as users' files do."""
    return st.sampled_from(formats).flatmap(lambda f: container(query_records(*f)))


def dump(value: Any, ensure_ascii: bool) -> str:
    """JSON text (with ensure_ascii, a lone surrogate is written as a `\\ud83d` escape)."""
    return json.dumps(value, ensure_ascii=ensure_ascii)


@st.composite
def jsonl_bytes(draw: st.DrawFn, records: st.SearchStrategy[Any]) -> bytes:
    """JSONL with broken, blank and GBK lines, CRLF or LF, maybe a BOM."""
    eol = draw(st.sampled_from([b"\n", b"\r\n"]))
    lines = []
    for rec in draw(st.lists(records, max_size=8)):
        kind = draw(st.integers(0, 15))
        line = dump(rec, ensure_ascii=kind % 2 == 0).encode("utf-8", "surrogatepass")
        if kind == 13:
            line = line[: len(line) // 2]  # a broken line
        elif kind == 14:
            line = b""  # a blank line
        elif kind == 15:
            line = dump(rec, ensure_ascii=False).encode("gbk", "replace")  # a GBK line
        lines.append(line)
    bom = codecs.BOM_UTF8 if draw(st.booleans()) else b""
    return bom + eol.join(lines) + (eol if draw(st.booleans()) else b"")


@st.composite
def json_list_bytes(draw: st.DrawFn, records: st.SearchStrategy[Any]) -> bytes:
    items = draw(st.lists(records, max_size=8))
    text = dump(items, ensure_ascii=draw(st.booleans()))
    raw = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 5)) == 0:
        raw = raw[: len(raw) // 2]  # a broken file
    return (codecs.BOM_UTF8 if draw(st.booleans()) else b"") + raw


@st.composite
def table_bytes(draw: st.DrawFn, delimiter: str) -> bytes:
    """A CSV/TSV table: header (maybe no text column), rows of random widths, quoting,
    embedded line breaks, long cells; UTF-8, UTF-8 with BOM or GBK; maybe a broken byte."""
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "gbk"]))
    header = draw(st.sampled_from([["label"], ["label"], ["id", "text"], ["text", "label"],
                                   ["标签"], ["Label", "说明"], ["a", "b"], ["label", "label"]]))
    cell = st.one_of(texts(tricky=False), texts(tricky=False), texts(), st.just(""),
                     st.just("x" * 200_000))
    width = len(header)
    row = sometimes_bad(st.lists(cell, min_size=width, max_size=width),
                        st.lists(cell, max_size=width + 2))
    rows = draw(st.lists(row, max_size=8))
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator=draw(st.sampled_from(["\n", "\r\n"]))
               ).writerows([header, *rows])
    raw = buf.getvalue().replace("\x00", "").encode(encoding, "replace")
    lines = raw.splitlines(keepends=True)
    if lines and draw(st.integers(0, 3)) == 0:
        at = draw(st.integers(0, len(lines) - 1))  # the header too, sometimes
        lines[at] = b"\x80" + lines[at]  # a byte no encoding takes
    return b"".join(lines)


@st.composite
def graded_bytes(draw: st.DrawFn) -> bytes:
    encoding = draw(st.sampled_from(["utf-8", "gbk"]))
    lines = []
    if draw(st.booleans()):
        lines.append("query\tdoc\tlabel")
    cell = texts(tricky=False)
    for _ in range(draw(st.integers(0, 8))):
        parts = [draw(cell), draw(cell), draw(st.sampled_from(["0", "1", "2", "3", "0.5"]))]
        bad = [draw(texts()), draw(st.sampled_from(["x", "", "-1", "nan", "1e400"])),
               draw(st.sampled_from([" ", "\"q\"", "3\t4"]))]
        lines.append("\t".join(draw(sometimes_bad(st.just(parts), st.permutations(bad)))))
    raw = draw(st.sampled_from(["\n", "\r\n"])).join(lines).encode(encoding, "replace")
    if draw(st.integers(0, 4)) == 0:
        raw += b"\n\x80bad\td\t1"
    return raw


XLSX_TEXT = texts(tricky=False)


@st.composite
def xlsx_cells(draw: st.DrawFn) -> list[list[Any]]:
    """Rows of a sheet: text mostly, and numbers, empty cells, formulas (no cached values:
    openpyxl writes none), error values."""
    header = draw(st.sampled_from([["label"], ["id", "text"], ["Question", "Label"], ["a", "b"],
                                   ["label", "x"]]))
    other = st.one_of(st.integers(-3, 10**6), st.floats(-10, 10), st.none(),
                      st.sampled_from(["=A1", "=1/0", '=""', "=SUM(1,2)", "#N/A"]))
    cell = sometimes_bad(XLSX_TEXT, other, odds=3)
    return [header, *draw(st.lists(st.lists(cell, min_size=1, max_size=3), max_size=6))]


def write_xlsx(path: Path, rows: list[list[Any]]) -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    for r, row in enumerate(rows, 1):
        for c, value in enumerate(row, 1):
            if value is not None:
                ws.cell(row=r, column=c, value=value)
    wb.save(path)


# -- the invariants ---------------------------------------------------------------------------
def encodable(*values: Any) -> bool:
    for v in values:
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(v, dict):
            if not encodable(*v.keys(), *v.values()):
                return False
        elif isinstance(v, list | tuple) and not encodable(*v):
            return False
    return True


def check_report(report: LoadReport, skip_bad: bool) -> None:
    assert report.read == report.loaded + report.skipped_total, report.summary()
    assert report.loaded > 0
    if not skip_bad:
        assert report.skipped_total == 0
    assert encodable(report.examples, list(report.skipped))


def check_corpus(corpus: Corpus, report: LoadReport, skip_bad: bool) -> None:
    check_report(report, skip_bad)
    assert len(corpus) == report.loaded
    assert len(set(corpus.ids)) == len(corpus.ids)
    assert all(t.strip() for t in corpus.texts)
    assert encodable(corpus.ids, corpus.texts, corpus.metadata or [])
    corpus.sha256()  # what `index build` and `eval` hash first


def check_queries(qs: QuerySet, report: LoadReport, skip_bad: bool) -> None:
    check_report(report, skip_bad)
    assert len({q.qid for q in qs}) == len(qs)
    assert all(q.text.strip() and q.relevant for q in qs)
    assert encodable([q.qid for q in qs], [q.text for q in qs], [q.gold for q in qs])
    qs.sha256()


def try_load(load: Callable[[bool], Any], check: Callable[..., None]) -> None:
    """Both ways: stop at the first bad record, and count and skip them."""
    for skip_bad in (False, True):
        try:
            loaded = load(skip_bad)
        except DataError as e:
            assert "\n" not in str(e) and encodable(str(e))
            continue
        check(*loaded, skip_bad)


# -- the properties ---------------------------------------------------------------------------
QUERY_FORMATS = (("pos", None), ("pos", "neg"), ("positive", "negative"), ("positive", None))

@FIXTURE_OK
@given(data=st.one_of(corpus_files(jsonl_bytes), corpus_files(json_list_bytes)))
def test_json_corpora(tmp_path: Path, data: bytes) -> None:
    p = tmp_path / "corpus.jsonl"
    p.write_bytes(data)
    try_load(lambda skip: load_corpus_with_report(p, skip_bad=skip), check_corpus)


@FIXTURE_OK
@given(data=st.one_of(*(query_files(c, QUERY_FORMATS) for c in (jsonl_bytes, json_list_bytes))))
def test_json_queries(tmp_path: Path, data: bytes) -> None:
    p = tmp_path / "queries.jsonl"
    p.write_bytes(data)
    try_load(lambda skip: load_queries_with_report(p, skip_bad=skip), check_queries)


@FIXTURE_OK
@given(data=graded_bytes(), suffix=st.sampled_from([".tsv", ".txt"]))
def test_graded_pairs(tmp_path: Path, data: bytes, suffix: str) -> None:
    p = tmp_path / f"pairs{suffix}"
    p.write_bytes(data)
    try_load(lambda skip: load_queries_with_report(p, skip_bad=skip), check_queries)


@FIXTURE_OK
@given(delimiter=st.sampled_from([",", "\t"]), data=st.data())
def test_csv_and_tsv_corpora(tmp_path: Path, delimiter: str, data: st.DataObject) -> None:
    p = tmp_path / ("corpus.csv" if delimiter == "," else "corpus.tsv")
    p.write_bytes(data.draw(table_bytes(delimiter)))
    column = data.draw(st.sampled_from([None, None, None, "label", "说明"]))
    try_load(lambda skip: load_corpus_with_report(p, skip_bad=skip, column=column),
             check_corpus)


@FIXTURE_OK
@given(rows=xlsx_cells(), id_field=st.sampled_from([None, "id"]))
def test_xlsx_corpora(tmp_path: Path, rows: list[list[Any]], id_field: str | None) -> None:
    p = tmp_path / "corpus.xlsx"
    write_xlsx(p, rows)
    try_load(lambda skip: load_corpus_with_report(p, skip_bad=skip, id_field=id_field),
             check_corpus)


def check_train(examples: list[Any], report: LoadReport, skip_bad: bool) -> None:
    check_report(report, skip_bad)
    assert len(examples) == report.loaded
    for e in examples:
        assert e.query.strip() and e.pos and not set(e.pos) & set(e.neg)
        assert encodable(e.query, e.pos, e.neg, e.prompt or "", e.type or "")


def check_rerank(rerank: Any, report: LoadReport, skip_bad: bool) -> None:
    check_report(report, skip_bad)
    assert len(rerank) == report.loaded
    assert len({s.qid for s in rerank.samples}) == len(rerank)
    for s in rerank.samples:
        assert s.query.strip() and encodable(s.qid, s.query, s.positive, s.negative)


@FIXTURE_OK
@given(data=query_files(jsonl_bytes, (("pos", "neg"), ("positive", "negative"), ("pos", None))))
def test_training_data(tmp_path: Path, data: bytes) -> None:
    p = tmp_path / "train.jsonl"
    p.write_bytes(data)
    try_load(lambda skip: load_train_with_report(p, skip_bad=skip), check_train)


@FIXTURE_OK
@given(data=query_files(jsonl_bytes, (("positive", "negative"), ("pos", "neg"))))
def test_reranking_data(tmp_path: Path, data: bytes) -> None:
    p = tmp_path / "rerank.jsonl"
    p.write_bytes(data)
    try_load(lambda skip: load_rerank_with_report(p, skip_bad=skip), check_rerank)
