"""Readers and writers for the corpus, query and training formats our users already have.

Every reader streams line by line where the format allows, names the file and the line (or row,
or list item) of any bad record in a one-line `DataError`, and fills a `LoadReport` so a caller
can show that what went in is what came out ("counts in == counts out"). With `skip_bad=True`
a bad record is counted and skipped instead of stopping the load; problems with the file as a
whole (empty, unknown layout, missing column, a header that cannot be read) always stop it.

CSV, TSV and XLSX tables are parsed whole by pandas (`read_csv`'s C parser, `read_excel` with
openpyxl); CSV/TSV bytes are decoded here first (see `detect_encoding`), so line numbers, bad
lines and the header stay under our control. JSON, JSONL and TXT are read line by line as
before.
"""

from __future__ import annotations

import codecs
import io
import json
import os
import re
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from embedarena.data.types import Corpus, Query, QuerySet
from embedarena.errors import ConfigError, DataError

__all__ = [
    "BadRecordError",
    "LoadReport",
    "RerankSample",
    "RerankSet",
    "TrainExample",
    "detect_encoding",
    "gold_not_in_corpus",
    "load_corpus",
    "load_corpus_with_report",
    "load_queries",
    "load_queries_with_report",
    "load_rerank_with_report",
    "load_train",
    "load_train_with_report",
    "read_table",
    "show_label",
    "sniff_kind",
    "whitespace_twins",
    "write_jsonl",
    "write_labels",
]

# Field names recognised when a record does not say which field is which (first match wins).
ID_FIELDS = ("_id", "id", "docid", "doc_id")
TEXT_FIELDS = ("text", "content", "contents", "passage", "label")
QID_FIELDS = ("id", "qid", "_id")
TABLE_TEXT_COLUMNS = ("label", "text")
SPREADSHEET_SUFFIXES = (".xlsx", ".xlsm")
TEXT_TABLE_SUFFIXES = (".csv", ".tsv")
TABLE_SUFFIXES = (*TEXT_TABLE_SUFFIXES, *SPREADSHEET_SUFFIXES)
MAX_EXAMPLES = 5
NOT_DETECTED_HINT = " (the file is neither UTF-8 nor GB18030; pass encoding=)"
NO_CACHED_VALUE_HINT = ("the workbook was saved without calculating it; open and save it in "
                        "Excel or LibreOffice")


# -- reporting -------------------------------------------------------------------------------
class BadRecordError(DataError):
    """One bad record (line, row or list item). `reason` is the short key it is counted under
    when the caller asked to skip bad records."""

    def __init__(self, path: str | Path, message: str, line: int | None, where: str,
                 reason: str) -> None:
        super().__init__(path, message, line=line, where=where)
        self.reason = reason


@dataclass
class LoadReport:
    """What a load read, kept and skipped, in the input's own unit (line, row or item).

    The invariant `read == loaded + skipped_total` always holds, so a caller can show that no
    record went missing silently. `notes` counts adjustments that kept the record (for example
    negatives removed because they were also positives).
    """

    path: str
    kind: str
    format: str = ""
    unit: str = "line"
    read: int = 0
    loaded: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    notes: dict[str, int] = field(default_factory=dict)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def skip(self, err: BadRecordError, records: int = 1) -> None:
        self.skipped[err.reason] = self.skipped.get(err.reason, 0) + records
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(str(err))

    def note(self, key: str, n: int = 1) -> None:
        if n:
            self.notes[key] = self.notes.get(key, 0) + n

    def summary(self) -> str:
        """One line for humans: `read 12 lines, loaded 10, skipped 2 (malformed JSON: 2)`."""
        out = f"read {self.read} {self.unit}s, loaded {self.loaded}"
        if self.skipped:
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.skipped.items()))
            out += f", skipped {self.skipped_total} ({reasons})"
        return out


class RecordGuard:
    """Raises a bad record, or counts it when the caller asked to skip bad records."""

    def __init__(self, report: LoadReport, skip_bad: bool) -> None:
        self.report = report
        self.skip_bad = skip_bad

    def __call__(self, err: BadRecordError, records: int = 1) -> None:
        if not self.skip_bad:
            raise err
        self.report.skip(err, records)


# -- low-level input -------------------------------------------------------------------------
def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataError(path, "no such file")
    if not path.is_file():
        raise DataError(path, "not a file")


def _first_byte(path: Path) -> bytes:
    """The first non-whitespace byte (after a UTF-8 BOM); an empty file is an error."""
    with path.open("rb") as f:
        while True:
            chunk = f.read(65536)
            if not chunk:
                raise DataError(path, "file is empty")
            stripped = chunk.lstrip(codecs.BOM_UTF8 + b" \t\r\n")
            if stripped:
                return stripped[:1]


def _codec(encoding: str) -> str:
    """Python's canonical name for an encoding the user named (`GBK` → `gbk`)."""
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise ConfigError(f"unknown encoding {encoding!r} (for example utf-8, gb18030, gbk)"
                          ) from None


def _encoding_label(encoding: str) -> str:
    """How messages and reports name an encoding: `UTF-8` (BOM or not), `GB18030`, `GBK`."""
    name = _codec(encoding)
    return "UTF-8" if name in ("utf-8", "utf-8-sig") else name.upper()


def detect_encoding(raw: bytes) -> str | None:
    """The encoding of a CSV/TSV file: `utf-8-sig` (UTF-8 BOM), `utf-8`, `gb18030`, or None.

    A fixed rule rather than a statistical guess (charset-normalizer): our users' tables come
    from Excel as "CSV UTF-8" (with a BOM) or as "CSV" saved in a Chinese Windows locale (GBK,
    which GB18030 extends), and a guesser can take a file of a few short Chinese labels for Big5
    or a Latin code page. UTF-8 goes first because GBK text longer than a few characters is
    almost never valid UTF-8 by chance, while UTF-8 text often decodes (wrongly) as GB18030.
    None means neither decodes the whole file; readers then read UTF-8 and name each bad line.
    """
    if raw.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    for encoding in ("utf-8", "gb18030"):
        try:
            raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        return encoding
    return None


def _text_encoding(path: Path, encoding: str | None, detect: bool) -> str:
    """The encoding to read `path` with: the one asked for, else detected (when `detect`),
    else UTF-8."""
    if encoding is not None:
        return _codec(encoding)
    if detect:
        return detect_encoding(path.read_bytes()) or "utf-8"
    return "utf-8"


def _check_encoding_applies(path: Path, encoding: str | None, suffixes: Sequence[str]) -> None:
    """`encoding=` on a file it cannot apply to is refused rather than silently ignored."""
    if encoding is not None and path.suffix.lower() not in suffixes:
        raise ConfigError(f"{path}: encoding= applies to {'/'.join(suffixes)} files only "
                          "(JSON and JSONL are read as UTF-8; XLSX stores its own text)")


def _decode_error(path: Path, raw: bytes, err: UnicodeDecodeError, line: int,
                  where: str = "line", encoding: str = "utf-8", hint: str = "") -> BadRecordError:
    label = _encoding_label(encoding)
    bad = raw[err.start:err.start + 1].hex()
    return BadRecordError(path, f"not valid {label} (byte 0x{bad} at column {err.start + 1})"
                                f"{hint}", line, where, f"not {label}")


def iter_lines(path: Path, guard: RecordGuard | None,
               encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """Decoded lines with their 1-based numbers; a line that does not decode is a bad record."""
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            if n == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as e:
                err = _decode_error(path, raw, e, n, encoding=encoding)
                if guard is None:
                    raise err from None
                guard.report.read += 1
                guard(err)
                continue
            yield n, text.rstrip("\r\n")


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def iter_json_values(path: Path, report: LoadReport,
                     guard: RecordGuard) -> Iterator[tuple[int, Any]]:
    """(number, value) for each record of a JSONL file or of a JSON array file.

    A file whose first non-blank byte is `[` is one JSON array (label.json); its records are
    numbered as list items. Anything else is read as JSONL, one record per non-blank line,
    whatever the file is called (FlagEmbedding's toy_corpus.json is JSONL).
    """
    if _first_byte(path) == b"[":
        report.unit = "item"
        raw = path.read_bytes()
        if raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8):]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            lineno = raw.count(b"\n", 0, e.start) + 1
            line_start = raw.rfind(b"\n", 0, e.start) + 1
            raise DataError(path, f"not valid UTF-8 (byte 0x{raw[e.start:e.start + 1].hex()} "
                                  f"at column {e.start - line_start + 1})", line=lineno) from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(path, f"malformed JSON: {e.msg} (column {e.colno})",
                            line=e.lineno) from None
        if not isinstance(data, list):
            raise DataError(path, f"expected a JSON list or JSONL, got {_describe(data)}")
        if not data:
            raise DataError(path, "the JSON list is empty")
        maybe_surrogates = _SURROGATE_ESCAPE.search(text) is not None
        for i, value in enumerate(data, 1):
            report.read += 1
            if maybe_surrogates and (bad := _lone_surrogate(value)) is not None:
                guard(_not_unicode(path, bad, i, "item"))
                continue
            yield i, value
        return
    report.unit = "line"
    for n, line in iter_lines(path, guard):
        if not line.strip():
            continue
        report.read += 1
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            guard(BadRecordError(path, f"malformed JSON: {e.msg} (column {e.colno})", n, "line",
                                 "malformed JSON"))
            continue
        if _SURROGATE_ESCAPE.search(line) and (bad := _lone_surrogate(value)) is not None:
            guard(_not_unicode(path, bad, n, "line"))
            continue
        yield n, value


# `\ud800`-`\udfff` escapes: JSON may spell half of a UTF-16 pair, which Python keeps as a lone
# surrogate that no UTF-8 encoder (hashing, Elasticsearch, the cache) accepts.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def _lone_surrogate(value: Any) -> str | None:
    """The first string (value or key) in a parsed JSON value holding a lone surrogate."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value
        return None
    if isinstance(value, dict):
        items: Iterable[Any] = (x for kv in value.items() for x in kv)
    elif isinstance(value, list):
        items = value
    else:
        return None
    for item in items:
        if (bad := _lone_surrogate(item)) is not None:
            return bad
    return None


def _not_unicode(path: Path, text: str, n: int, where: str) -> BadRecordError:
    char = next(c for c in text if 0xD800 <= ord(c) <= 0xDFFF)
    return BadRecordError(path, f"not valid Unicode: the string holds a lone surrogate "
                                f"\\u{ord(char):04x} (half of an escaped UTF-16 pair)", n, where,
                          "not valid Unicode")


def _cell_text(value: Any) -> str:
    """A spreadsheet/CSV cell as stripped text (numbers without a spurious `.0`)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value).strip()


@dataclass
class Table:
    """Rows of a CSV/TSV/XLSX file: header cells as written (duplicates kept) and data rows
    with the number a user sees (spreadsheet row, or the CSV line the record starts on)."""

    path: Path
    header: list[str]
    rows: Iterator[tuple[int, list[str]]]
    where: str
    format: str
    encoding: str = ""

    def column_index(self, name: str) -> int | None:
        """Position of the first column called `name` (exact, else case-insensitive)."""
        for i, h in enumerate(self.header):
            if h == name:
                return i
        for i, h in enumerate(self.header):
            if h.casefold() == name.casefold():
                return i
        return None


def read_table(path: str | Path, *, sheet: str | None = None, guard: RecordGuard | None = None,
               encoding: str | None = None) -> Table:
    """Open a CSV, TSV or XLSX file as a header plus rows of stripped cell text.

    The first line (row) is always the header; it is never skipped or counted as a record, and
    one that cannot be read stops the load. Fully blank rows are yielded too (as empty cells),
    so callers decide how to count them. A row that cannot be read (undecodable bytes, more
    cells than the header, a formula without a cached value) is a `BadRecordError`: raised, or
    with a `guard` counted as read and skipped. `encoding` applies to CSV/TSV (None: detect).
    """
    p = Path(path)
    _check_file(p)
    suffix = p.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataError(p, f"not a table file ({', '.join(TABLE_SUFFIXES)})")
    _check_encoding_applies(p, encoding, TEXT_TABLE_SUFFIXES)
    if suffix in SPREADSHEET_SUFFIXES:
        return _read_xlsx(p, sheet, guard)
    return _read_csv(p, "\t" if suffix == ".tsv" else ",", encoding, guard)


def _guarded(rows: Iterable[tuple[int, list[str], BadRecordError | None]],
             guard: RecordGuard | None) -> Iterator[tuple[int, list[str]]]:
    """Rows without a problem; a row with one is raised, or counted as read and skipped."""
    for n, cells, err in rows:
        if err is None:
            yield n, cells
        elif guard is None:
            raise err
        else:
            guard.report.read += 1
            guard(err)


def _decode_text(path: Path, raw: bytes, encoding: str,
                 hint: str = "") -> tuple[str, dict[int, BadRecordError]]:
    """The whole text, and the lines that do not decode by number. A bad line is left empty in
    the text (line ending kept), so the parser still sees every line and the numbers hold."""
    raw = raw.removeprefix(codecs.BOM_UTF8)
    try:
        return raw.decode(encoding), {}
    except UnicodeDecodeError:
        pass
    parts: list[str] = []
    bad: dict[int, BadRecordError] = {}
    for n, line in enumerate(raw.splitlines(keepends=True), 1):
        body = line.rstrip(b"\r\n")
        try:
            parts.append(body.decode(encoding))
        except UnicodeDecodeError as e:
            bad[n] = _decode_error(path, body, e, n, encoding=encoding, hint=hint)
        parts.append(line[len(body):].decode("ascii") or "\n")
    return "".join(parts), bad


def _line_breaks(cells: Sequence[str]) -> int:
    """Line breaks inside a record's (quoted) cells: the lines it spans beyond its first."""
    return sum(c.count("\n") + c.count("\r") - c.count("\r\n") for c in cells)


def _parse_csv(path: Path, text: str, delimiter: str) -> tuple[list[list[str]], int]:
    """Every record, header first, as cell lists, and the header's width.

    pandas' C parser, which has no field size limit (the csv module stops at 131072
    characters). It rejects rows wider than the header, so a file with such rows is parsed
    once more with room for the widest; the caller decides what the extra cells mean.
    `header=None` keeps the header a plain row (no renaming of repeated names, never skipped).
    """
    import pandas as pd

    options: dict[str, Any] = {"sep": delimiter, "header": None, "dtype": str,
                               "na_filter": False, "skip_blank_lines": False, "engine": "c"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        frame = pd.read_csv(io.StringIO(text), on_bad_lines="warn", **options)
    parser_warnings = []
    for w in caught:
        if issubclass(w.category, pd.errors.ParserWarning):
            parser_warnings.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    width = frame.shape[1]
    if parser_warnings:
        wider = [int(m) for m in re.findall(r"saw (\d+)", "".join(parser_warnings))]
        if not wider:  # never go on with a frame pandas dropped rows from
            raise DataError(path, f"malformed CSV: {' '.join(parser_warnings).strip()}")
        frame = pd.read_csv(io.StringIO(text), names=list(range(max(wider))), **options)
    return frame.values.tolist(), width


def _unclosed_quote_line(text: str, delimiter: str) -> int | None:
    """The line of the quote that opens the cell still open at the end of the file (the
    parser only says which record), following the C parser's quoting rules."""
    line = opened = 1
    quoted = False
    field_start = 0
    skip_to = -1
    for m in re.finditer(rf'"|{re.escape(delimiter)}|\r\n|\r|\n', text):
        token = m.group()
        if m.start() < skip_to:
            continue
        if token == '"':
            if quoted:
                if text.startswith('"', m.end()):
                    skip_to = m.end() + 1  # "" is an escaped quote
                else:
                    quoted = False
            elif m.start() == field_start:
                quoted, opened = True, line
        elif token == delimiter:
            if not quoted:
                field_start = m.end()
        else:
            line += 1
            if not quoted:
                field_start = m.end()
    return opened if quoted else None


def _read_csv(path: Path, delimiter: str, encoding: str | None,
              guard: RecordGuard | None) -> Table:
    import pandas as pd

    _first_byte(path)  # empty-file check
    raw = path.read_bytes()
    detected = detect_encoding(raw) if encoding is None else None
    codec = _codec(encoding) if encoding is not None else detected or "utf-8"
    hint = "" if encoding or detected else NOT_DETECTED_HINT
    text, bad = _decode_text(path, raw, codec, hint)
    if 1 in bad:
        raise DataError(path, f"the header is {bad[1].detail}", line=1)
    try:
        records, width = _parse_csv(path, text, delimiter)
    except pd.errors.EmptyDataError:
        raise DataError(path, "the first line is blank; the header must be on line 1",
                        line=1) from None
    except pd.errors.ParserError as e:
        msg = str(e).removeprefix("Error tokenizing data. C error: ").strip()
        if msg.startswith("EOF inside string"):
            raise DataError(path, "malformed CSV: a quoted cell is never closed (its opening "
                                  "quote is here)",
                            line=_unclosed_quote_line(text, delimiter)) from None
        raise DataError(path, f"malformed CSV: {msg}") from None
    label = _encoding_label(codec)
    header = [_cell_text(c) for c in records[0][:width]]

    def rows() -> Iterator[tuple[int, list[str], BadRecordError | None]]:
        start = 2 + _line_breaks(records[0])
        for record in records[1:]:
            end = start + _line_breaks(record)
            err = next((bad[k] for k in range(start, end + 1) if k in bad), None)
            cells = [_cell_text(c) for c in record]
            if err is None and any(cells[width:]):
                used = max(i for i, c in enumerate(cells) if c) + 1
                err = BadRecordError(path, f"{used} cells but the header has {width} (a "
                                           f"delimiter inside an unquoted cell?)", start,
                                     "line", "bad row")
            yield start, cells[:width], err
            start = end + 1

    fmt = "tsv" if delimiter == "\t" else "csv"
    if label != "UTF-8":
        fmt += f" ({label})"
    return Table(path, header, _guarded(rows(), guard), "line", fmt, label)


def _read_xlsx(path: Path, sheet: str | None, guard: RecordGuard | None) -> Table:
    """The sheet's cached values through pandas; openpyxl finds the formula cells, because
    pandas shows a formula without a cached value (a workbook written by a script and never
    opened in Excel) as an empty cell, and its error values (#N/A) as NaN."""
    import zipfile

    import pandas as pd
    from openpyxl.utils.exceptions import InvalidFileException

    unreadable = (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError)
    try:
        xl = pd.ExcelFile(path, engine="openpyxl")
    except unreadable as e:
        raise DataError(path, f"not a readable .xlsx workbook ({e})") from None
    with xl:
        book = xl.book
        if sheet is not None and sheet not in book.sheetnames:
            raise DataError(path, f"no sheet '{sheet}' (sheets: {', '.join(book.sheetnames)})")
        title = sheet if sheet is not None else book.worksheets[0].title
        try:
            values = pd.read_excel(xl, sheet_name=title, header=None, dtype=object,
                                   na_filter=False).values.tolist()
        except unreadable as e:
            raise DataError(path, f"not a readable .xlsx workbook ({e})") from None
        formulas, errors = _formula_and_error_cells(path, title)

        def blank(r: int, c: int) -> bool:
            v = values[r - 1][c - 1] if r <= len(values) and c <= len(values[r - 1]) else ""
            return v == "" or v is None or (isinstance(v, float) and v != v)

        suspects = {rc for rc in formulas if blank(*rc)}
        uncached = _uncached(book[title], suspects, errors)
    for (r, c), text in errors.items():
        if r <= len(values) and c <= len(values[r - 1]):
            values[r - 1][c - 1] = text  # as openpyxl gave it before pandas: '#N/A'
    if not values and not uncached:
        raise DataError(path, "file is empty")
    problems: dict[int, list[str]] = {}
    for r, c in sorted(uncached):
        problems.setdefault(r, []).append(f"{_column_letter(c)}{r}")
    if 1 in problems:
        raise DataError(path, f"header cell {', '.join(problems[1])} is a formula without a "
                              f"cached value ({NO_CACHED_VALUE_HINT})", line=1, where="row")
    header = [_cell_text(c) for c in values[0]] if values else []
    last = max(len(values), max(problems, default=0))

    def rows() -> Iterator[tuple[int, list[str], BadRecordError | None]]:
        for n in range(2, last + 1):
            cells = [_cell_text(c) for c in values[n - 1]] if n <= len(values) else []
            err = None
            if n in problems:
                err = BadRecordError(path, f"formula without a cached value in "
                                           f"{', '.join(problems[n])} ({NO_CACHED_VALUE_HINT})",
                                     n, "row", "formula without cached value")
            yield n, cells, err

    return Table(path, header, _guarded(rows(), guard), "row", "xlsx")


def _column_letter(column: int) -> str:
    from openpyxl.utils import get_column_letter

    return get_column_letter(column)


def _formula_and_error_cells(path: Path, title: str,
                             ) -> tuple[set[tuple[int, int]], dict[tuple[int, int], str]]:
    """(row, column) of every formula cell, and the text of every literal error cell (#N/A),
    from the sheet as written (openpyxl without cached values)."""
    import openpyxl

    formulas: set[tuple[int, int]] = set()
    errors: dict[tuple[int, int], str] = {}
    wb = openpyxl.load_workbook(path, read_only=True, data_only=False)
    try:
        ws = wb[title]
        ws.reset_dimensions()  # a stale <dimension> must not hide rows
        for row in ws.iter_rows():
            for cell in row:
                if cell.data_type == "f":
                    formulas.add((cell.row, cell.column))
                elif cell.data_type == "e":
                    errors[(cell.row, cell.column)] = str(cell.value)
    finally:
        wb.close()
    return formulas, errors


def _uncached(ws: Any, suspects: set[tuple[int, int]],
              errors: dict[tuple[int, int], str]) -> set[tuple[int, int]]:
    """Those formula cells pandas showed blank that have no cached value; a cell counts as
    cached only when the workbook's values say so.

    A formula whose cached result is an empty string is stored as type `str` and is simply
    blank; a cached error result (#DIV/0!) goes into `errors`, as pandas gives NaN for it.
    """
    out = set(suspects)
    if not suspects:
        return out
    rows = [r for r, _ in suspects]
    for row in ws.iter_rows(min_row=min(rows), max_row=max(rows)):
        for cell in row:
            rc = (getattr(cell, "row", 0), getattr(cell, "column", 0))  # EmptyCell has neither
            if rc not in out:
                continue
            if cell.data_type == "e":
                errors[rc] = str(cell.value)
                out.discard(rc)
            elif cell.value is not None or cell.data_type == "str":
                out.discard(rc)
    return out


# -- corpus ----------------------------------------------------------------------------------
def load_corpus(path: str | Path, *, column: str | None = None, id_field: str | None = None,
                text_field: str | None = None, skip_bad: bool = False,
                encoding: str | None = None) -> Corpus:
    """Load a corpus; see `load_corpus_with_report` for the formats."""
    return load_corpus_with_report(path, column=column, id_field=id_field,
                                   text_field=text_field, skip_bad=skip_bad,
                                   encoding=encoding)[0]


def load_corpus_with_report(
    path: str | Path, *, column: str | None = None, id_field: str | None = None,
    text_field: str | None = None, skip_bad: bool = False, encoding: str | None = None,
) -> tuple[Corpus, LoadReport]:
    """Load a corpus and say what happened.

    Formats: a JSON list of label strings (id == text, like seed 004's label.json); a JSON
    list or JSONL of records `{id?, text, ...}`, including FlagEmbedding's `{"content"}` and
    BEIR's `{"_id", "title", "text"}`; or one column of a CSV/TSV/XLSX file (`column`, default
    the first column called label/text, or the only column).

    A record without an id field uses its text as id, so gold labels given as text (seed 004,
    FlagEmbedding's toy queries) match. For BEIR records the embedded text is
    `title + " " + text` when the title is non-empty (what BEIR's own dense evaluation does);
    the title also stays in the metadata. Fields other than id and text become metadata (a
    nested BEIR `metadata` object is flattened into it). Duplicate ids and empty texts are bad
    records. `encoding` is for CSV/TSV (None: detect UTF-8, UTF-8 with BOM or GB18030).
    """
    p = Path(path)
    _check_file(p)
    _check_encoding_applies(p, encoding, TEXT_TABLE_SUFFIXES)
    report = LoadReport(str(p), "corpus")
    guard = RecordGuard(report, skip_bad)
    ids: list[str] = []
    texts: list[str] = []
    metas: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    suffix = p.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        entries = _table_corpus(p, report, guard, column, id_field, encoding)
    else:
        entries = _json_corpus(p, report, guard, id_field, text_field)
    for n, where, doc_id, text, meta in entries:
        if not text.strip():
            guard(BadRecordError(p, "empty text", n, where, "empty text"))
            continue
        if doc_id in seen:
            guard(BadRecordError(p, f"duplicate id {doc_id!r} (first at {where} {seen[doc_id]})",
                                 n, where, "duplicate id"))
            continue
        seen[doc_id] = n
        ids.append(doc_id)
        texts.append(text)
        metas.append(meta)
    report.loaded = len(ids)
    _check_loaded(p, report)
    metadata = metas if any(metas) else None
    return Corpus(ids=ids, texts=texts, source=str(p), metadata=metadata), report


_CorpusEntry = tuple[int, str, str, str, dict[str, Any]]


def _json_corpus(path: Path, report: LoadReport, guard: RecordGuard, id_field: str | None,
                 text_field: str | None) -> Iterator[_CorpusEntry]:
    fields: tuple[str | None, str, bool] | None = None  # (id field, text field, beir title)
    kinds: set[str] = set()
    for n, value in iter_json_values(path, report, guard):
        where = report.unit
        if isinstance(value, str):
            kinds.add("labels")
            report.format = f"{_container(report)} {_corpus_format(kinds, fields)}"
            yield n, where, value, value, {}
            continue
        if not isinstance(value, dict):
            guard(BadRecordError(path, f"expected a string or an object, got {_describe(value)}",
                                 n, where, "wrong type"))
            continue
        if fields is None:
            fields = _detect_corpus_fields(path, value, n, where, id_field, text_field)
        kinds.add("records")
        report.format = f"{_container(report)} {_corpus_format(kinds, fields)}"
        try:
            yield (n, where, *_corpus_record(path, value, n, where, fields))
        except BadRecordError as e:
            guard(e)


def _corpus_format(kinds: set[str], fields: tuple[str | None, str, bool] | None) -> str:
    if "records" not in kinds:
        return "label list"
    if fields is not None and fields[2]:
        return "BEIR corpus records"
    if fields is not None and fields[1] == "content":
        return "FlagEmbedding corpus records"
    return "records"


def _container(report: LoadReport) -> str:
    return "JSON list of" if report.unit == "item" else "JSONL"


def _detect_corpus_fields(path: Path, rec: dict[str, Any], n: int, where: str,
                          id_field: str | None, text_field: str | None,
                          ) -> tuple[str | None, str, bool]:
    tf = text_field or next((f for f in TEXT_FIELDS if f in rec), None)
    if tf is None:
        raise DataError(path, f"no text field (tried {', '.join(TEXT_FIELDS)}; "
                              f"fields here: {', '.join(rec) or 'none'}); use text_field",
                        line=n, where=where)
    idf = id_field or next((f for f in ID_FIELDS if f in rec), None)
    beir = text_field is None and tf == "text" and "title" in rec
    return idf, tf, beir


def _corpus_record(path: Path, rec: dict[str, Any], n: int, where: str,
                   fields: tuple[str | None, str, bool]) -> tuple[str, str, dict[str, Any]]:
    idf, tf, beir = fields
    if tf not in rec:
        raise BadRecordError(path, f"missing field '{tf}'", n, where, "missing field")
    text = rec[tf]
    if not isinstance(text, str):
        raise BadRecordError(path, f"field '{tf}' must be a string, got {_describe(text)}",
                             n, where, "wrong type")
    used = {tf}
    if beir:
        title = rec.get("title")
        if title is not None and not isinstance(title, str):
            raise BadRecordError(path, f"field 'title' must be a string, got {_describe(title)}",
                                 n, where, "wrong type")
        if title and title.strip() and text.strip():
            text = f"{title} {text}"
        elif title and title.strip():
            text = title
    if idf is None:
        doc_id = text
    else:
        if idf not in rec:
            raise BadRecordError(path, f"missing field '{idf}'", n, where, "missing field")
        raw_id = rec[idf]
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
            raise BadRecordError(path, f"field '{idf}' must be a string or an integer, got "
                                       f"{_describe(raw_id)}", n, where, "wrong type")
        doc_id = str(raw_id)
        used.add(idf)
    meta: dict[str, Any] = {}
    for k, v in rec.items():
        if k in used:
            continue
        if k == "metadata" and isinstance(v, dict):
            meta.update(v)
        else:
            meta[k] = v
    return doc_id, text, meta


def _table_corpus(path: Path, report: LoadReport, guard: RecordGuard, column: str | None,
                  id_field: str | None, encoding: str | None) -> Iterator[_CorpusEntry]:
    table = read_table(path, guard=guard, encoding=encoding)
    report.unit = table.where
    report.format = f"{table.format} column"
    if column is not None:
        ci = table.column_index(column)
        if ci is None:
            raise DataError(path, f"no column '{column}' (columns: {_cols(table.header)})",
                            line=1, where=table.where)
    else:
        named = [i for i, h in enumerate(table.header) if h.casefold() in TABLE_TEXT_COLUMNS]
        nonempty = [i for i, h in enumerate(table.header) if h]
        if named:
            ci = named[0]
        elif len(nonempty) == 1:
            ci = nonempty[0]
        else:
            raise DataError(path, f"which column holds the text? none is called label or text "
                                  f"(columns: {_cols(table.header)}); use column",
                            line=1, where=table.where)
    ii = None
    if id_field is not None:
        ii = table.column_index(id_field)
        if ii is None:
            raise DataError(path, f"no id column '{id_field}' (columns: {_cols(table.header)})",
                            line=1, where=table.where)
    report.format = f"{table.format} column '{table.header[ci]}'"
    for n, cells in table.rows:
        if not any(cells):
            report.note("blank rows ignored")
            continue
        report.read += 1
        text = cells[ci] if ci < len(cells) else ""
        doc_id = (cells[ii] if ii < len(cells) else "") if ii is not None else text
        if ii is not None and not doc_id:
            guard(BadRecordError(path, f"empty id in column '{id_field}'", n, table.where,
                                 "missing field"))
            continue
        meta = {h: c for i, (h, c) in enumerate(zip(table.header, cells))
                if h and c and i not in (ci, ii)}
        yield n, table.where, doc_id, text, meta


def _check_loaded(path: Path, report: LoadReport) -> None:
    """Nothing usable is an error: an empty corpus or query set would only fail later."""
    if report.read == 0:
        raise DataError(path, "file has no records")
    if report.loaded == 0:
        first = report.examples[0] if report.examples else "none"
        first = first.removeprefix(f"{path}:")
        raise DataError(path, f"no usable records ({report.summary()}; first problem: "
                              f"{first.strip()})")


def _cols(header: Sequence[str]) -> str:
    return ", ".join(repr(h) for h in header if h) or "none"


def sniff_kind(path: str | Path) -> str:
    """'queries' for a graded TSV or records with a 'query' field, else 'corpus'; lets
    `data inspect` pick a reader without being told."""
    p = Path(path)
    _check_file(p)
    suffix = p.suffix.lower()
    if suffix in (".tsv", ".txt"):
        return "queries"
    if suffix in TABLE_SUFFIXES:
        return "corpus"
    report = LoadReport(str(p), "sniff")
    for _n, value in iter_json_values(p, report, RecordGuard(report, skip_bad=True)):
        if isinstance(value, dict):
            return "queries" if "query" in value else "corpus"
        if isinstance(value, str):
            return "corpus"
    return "corpus"


# -- queries ---------------------------------------------------------------------------------
def load_queries(path: str | Path, *, name: str | None = None, skip_bad: bool = False,
                 encoding: str | None = None) -> QuerySet:
    """Load a query file; see `load_queries_with_report` for the formats."""
    return load_queries_with_report(path, name=name, skip_bad=skip_bad, encoding=encoding)[0]


def load_queries_with_report(path: str | Path, *, name: str | None = None,
                             skip_bad: bool = False,
                             encoding: str | None = None) -> tuple[QuerySet, LoadReport]:
    """Load queries with their gold labels and say what happened.

    JSON/JSONL formats are told apart by the first record's keys: test `{"query", "pos"}`,
    train `{"query", "pos", "neg"}` (negatives ignored here), T2Reranking
    `{"query", "positive", "negative"}` and FlagEmbedding's eval `{"query", "positive"}`.
    Gold labels get gain 1.0; a single string instead of a list is accepted (seed 004's files
    do that). A `.tsv`/`.txt` file is graded pairs `query<TAB>doc<TAB>grade`, grouped by query,
    grades kept (> 0 means relevant). The qid is an `id`/`qid`/`_id` field when there is one,
    else the 1-based line (or list item) number where the query first appears. A query without
    any positive is a bad record: it could never be scored. `encoding` is for the graded
    pairs; a `.tsv` is detected like a CSV (see `detect_encoding`), a `.txt` is UTF-8 unless
    told, as JSON and JSONL always are.
    """
    p = Path(path)
    _check_file(p)
    _check_encoding_applies(p, encoding, (".tsv", ".txt"))
    qs_name = name or p.stem
    report = LoadReport(str(p), "queries")
    guard = RecordGuard(report, skip_bad)
    if p.suffix.lower() in (".tsv", ".txt"):
        queries = _tsv_queries(p, report, guard, encoding)
    else:
        queries = _json_queries(p, report, guard)
    if report.unit != "row":  # TSV counts rows itself; one query groups several
        report.loaded = len(queries)
    _check_loaded(p, report)
    return QuerySet(qs_name, queries, source=str(p)), report


_QUERY_FORMATS = {  # (gold key, has negatives) → format name
    ("pos", True): "train JSONL {query, pos, neg}",
    ("pos", False): "test JSONL {query, pos}",
    ("positive", True): "T2Reranking {query, positive, negative}",
    ("positive", False): "FlagEmbedding eval {query, positive}",
}


def _string_list(path: Path, rec: Mapping[str, Any], key: str, n: int, where: str,
                 report: LoadReport | None = None) -> list[str]:
    """A list of strings, or a single string wrapped as one; empty strings are dropped."""
    value = rec[key]
    if isinstance(value, str):
        if report is not None:
            report.note(f"'{key}' given as a single string")
        value = [value]
    if not isinstance(value, list):
        raise BadRecordError(path, f"field '{key}' must be a list of strings, got "
                                   f"{_describe(value)}", n, where, "wrong type")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise BadRecordError(path, f"{key}[{i}] must be a string, got {_describe(item)}",
                                 n, where, "wrong type")
        if item.strip():
            out.append(item)
        elif report is not None:
            report.note(f"empty strings dropped from '{key}'")
    return out


def _query_text(path: Path, rec: Mapping[str, Any], n: int, where: str) -> str:
    if "query" not in rec:
        raise BadRecordError(path, "missing field 'query'", n, where, "missing field")
    text = rec["query"]
    if not isinstance(text, str):
        raise BadRecordError(path, f"field 'query' must be a string, got {_describe(text)}",
                             n, where, "wrong type")
    if not text.strip():
        raise BadRecordError(path, "empty query", n, where, "empty query")
    return text


def _explicit_qid(path: Path, rec: Mapping[str, Any], n: int, where: str) -> str | None:
    for key in QID_FIELDS:
        if key in rec:
            v = rec[key]
            if isinstance(v, bool) or not isinstance(v, (str, int)) or str(v) == "":
                raise BadRecordError(path, f"field '{key}' must be a non-empty string or an "
                                           f"integer, got {_describe(v)}", n, where, "wrong type")
            return str(v)
    return None


def _json_queries(path: Path, report: LoadReport, guard: RecordGuard) -> list[Query]:
    gold_key: str | None = None
    queries: list[Query] = []
    seen: dict[str, int] = {}
    for n, rec in iter_json_values(path, report, guard):
        where = report.unit
        if not isinstance(rec, dict):
            guard(BadRecordError(path, f"expected an object, got {_describe(rec)}", n, where,
                                 "wrong type"))
            continue
        if gold_key is None:
            gold_key = "positive" if "positive" in rec else "pos" if "pos" in rec else None
            if gold_key is None:
                raise DataError(path, "cannot tell the query format: the first record has "
                                      "neither 'pos' nor 'positive' (fields here: "
                                      f"{', '.join(rec) or 'none'})", line=n, where=where)
            neg_key = "negative" if gold_key == "positive" else "neg"
            report.format = _QUERY_FORMATS[(gold_key, neg_key in rec)]
        try:
            text = _query_text(path, rec, n, where)
            if gold_key not in rec:
                raise BadRecordError(path, f"missing field '{gold_key}'", n, where,
                                     "missing field")
            pos = _string_list(path, rec, gold_key, n, where, report)
            if not pos:
                raise BadRecordError(path, f"query has no positive in '{gold_key}'", n, where,
                                     "no positive")
            qid = _explicit_qid(path, rec, n, where) or str(n)
            if qid in seen:
                raise BadRecordError(path, f"duplicate query id {qid!r} (first at {where} "
                                           f"{seen[qid]})", n, where, "duplicate id")
        except BadRecordError as e:
            guard(e)
            continue
        seen[qid] = n
        queries.append(Query(qid=qid, text=text, gold=dict.fromkeys(pos, 1.0)))
    return queries


def _tsv_queries(path: Path, report: LoadReport, guard: RecordGuard,
                 encoding: str | None) -> list[Query]:
    """Line by line, not through pandas: a query may hold a literal `"` (no CSV quoting)."""
    report.format = "graded TSV query<TAB>doc<TAB>grade"
    report.unit = "row"
    _first_byte(path)
    codec = _text_encoding(path, encoding, detect=path.suffix.lower() == ".tsv")
    if _encoding_label(codec) != "UTF-8":
        report.format += f" ({_encoding_label(codec)})"
    with path.open("rb") as f:
        head = f.readline().removeprefix(codecs.BOM_UTF8)
    try:
        head.decode(codec)
    except UnicodeDecodeError as e:  # header or record? Unknown, so never skip or count it
        detail = _decode_error(path, head, e, 1, encoding=codec).detail
        hint = "" if encoding else " (pass encoding=)"
        raise DataError(path, f"the first line is {detail}{hint}", line=1) from None
    groups: dict[str, tuple[int, dict[str, float], list[int]]] = {}
    first = True
    for n, line in iter_lines(path, guard, encoding=codec):
        if not line.strip():
            continue
        parts = line.split("\t")
        if first:
            first = False
            if len(parts) == 3 and not _is_number(parts[2]):
                report.note("header line skipped")
                continue
        report.read += 1
        if len(parts) != 3:
            guard(BadRecordError(path, f"expected 3 tab-separated fields (query, doc, grade), "
                                       f"got {len(parts)}", n, "line", "bad row"))
            continue
        query, doc, grade_s = parts[0].strip(), parts[1], parts[2].strip()
        if not query or not doc.strip():
            guard(BadRecordError(path, "empty query or doc", n, "line", "bad row"))
            continue
        if not _is_number(grade_s):
            guard(BadRecordError(path, f"grade {grade_s!r} is not a number", n, "line",
                                 "wrong type"))
            continue
        grade = float(grade_s)
        first_line, gold, lines = groups.setdefault(query, (n, {}, []))
        lines.append(n)
        if doc in gold:
            report.note("duplicate (query, doc) rows: kept the highest grade")
            grade = max(grade, gold[doc])
        gold[doc] = grade
    queries = []
    for query, (first_line, gold, lines) in groups.items():
        if not any(g > 0 for g in gold.values()):
            guard(BadRecordError(path, "query has no row with a grade above 0", first_line,
                                 "line", "no positive"), records=len(lines))
            continue
        report.loaded += len(lines)
        queries.append(Query(qid=str(first_line), text=query, gold=gold))
    return queries


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def gold_not_in_corpus(corpus: Corpus, queryset: QuerySet) -> dict[str, list[str]]:
    """Queries whose relevant gold ids are missing from the corpus: they can never be found,
    so eval reports them instead of silently scoring them as misses. Judged-non-relevant
    (grade 0) ids are not checked."""
    ids = set(corpus.ids)
    return {q.qid: missing for q in queryset
            if (missing := [g for g in q.relevant if g not in ids])}


def whitespace_twins(corpus: Corpus, labels: Iterable[str]) -> dict[str, str]:
    """Gold labels missing from the corpus that equal a corpus id once surrounding whitespace
    is stripped from both (`'甲状腺癌 '` vs `'甲状腺癌'`): label → that id. Nothing is
    stripped silently (ids are compared exactly); this only explains the miss."""
    ids = set(corpus.ids)
    stripped: dict[str, str] = {}
    for doc_id in corpus.ids:
        stripped.setdefault(doc_id.strip(), doc_id)
    return {g: stripped[g.strip()] for g in labels if g not in ids and g.strip() in stripped}


def show_label(label: str, twin: str | None = None) -> str:
    """A label as a message shows it: quoted (Python repr) when whitespace at its ends or
    inside would otherwise be invisible, plus the corpus id it differs from only in that."""
    plain = label == label.strip() and " ".join(label.split()) == label
    out = label if plain else repr(label)
    if twin is not None:
        out += f" (the corpus has {twin!r}: they differ only in surrounding whitespace)"
    return out


# -- training data ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainExample:
    """One FlagEmbedding training line: a query, its positives and (hard) negatives, with the
    optional teacher scores, per-query prompt and type of FlagEmbedding's newer example data."""

    query: str
    pos: list[str]
    neg: list[str] = field(default_factory=list)
    pos_scores: list[float] | None = None
    neg_scores: list[float] | None = None
    prompt: str | None = None
    type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The FlagEmbedding JSONL record (optional fields only when set)."""
        out: dict[str, Any] = {"query": self.query, "pos": self.pos, "neg": self.neg}
        for key in ("pos_scores", "neg_scores", "prompt", "type"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


def load_train(path: str | Path, *, skip_bad: bool = False) -> list[TrainExample]:
    """Load FlagEmbedding training data; see `load_train_with_report`."""
    return load_train_with_report(path, skip_bad=skip_bad)[0]


def load_train_with_report(path: str | Path, *,
                           skip_bad: bool = False) -> tuple[list[TrainExample], LoadReport]:
    """Load `{"query", "pos", "neg", "pos_scores"?, "neg_scores"?, "prompt"?, "type"?}` lines
    (also T2Reranking's `positive`/`negative` names and RAG-Retrieval's `scores`).

    A passage listed in both pos and neg (6 of T2Ranking's 100 queries do that) is removed from
    neg, with its score, and counted in the report, so it is never trained on as a negative.
    """
    p = Path(path)
    _check_file(p)
    report = LoadReport(str(p), "train", format="FlagEmbedding train JSONL")
    guard = RecordGuard(report, skip_bad)
    out: list[TrainExample] = []
    for n, rec in iter_json_values(p, report, guard):
        where = report.unit
        try:
            out.append(_train_example(p, rec, n, where, report))
        except BadRecordError as e:
            guard(e)
    report.loaded = len(out)
    _check_loaded(p, report)
    return out, report


def _train_example(path: Path, rec: Any, n: int, where: str,
                   report: LoadReport) -> TrainExample:
    if not isinstance(rec, dict):
        raise BadRecordError(path, f"expected an object, got {_describe(rec)}", n, where,
                             "wrong type")
    query = _query_text(path, rec, n, where)
    pos_key = "pos" if "pos" in rec else "positive" if "positive" in rec else None
    if pos_key is None:
        raise BadRecordError(path, "missing field 'pos'", n, where, "missing field")
    pos = _string_list(path, rec, pos_key, n, where, report)
    if not pos:
        raise BadRecordError(path, f"no positive in '{pos_key}'", n, where, "no positive")
    neg_key = "neg" if "neg" in rec else "negative" if "negative" in rec else None
    neg = _string_list(path, rec, neg_key, n, where, report) if neg_key else []
    pos_scores = _scores(path, rec, ("pos_scores", "scores"), len(pos), pos_key, n, where)
    neg_scores = _scores(path, rec, ("neg_scores",), len(neg), neg_key or "neg", n, where)
    prompt = _optional_str(path, rec, "prompt", n, where)
    kind = _optional_str(path, rec, "type", n, where)
    pos_set = set(pos)
    if pos_set.intersection(neg):
        keep = [i for i, t in enumerate(neg) if t not in pos_set]
        report.note("negatives removed because they are also positives", len(neg) - len(keep))
        report.note("examples with a negative that is also a positive")
        neg = [neg[i] for i in keep]
        if neg_scores is not None:
            neg_scores = [neg_scores[i] for i in keep]
    return TrainExample(query, pos, neg, pos_scores, neg_scores, prompt, kind)


def _scores(path: Path, rec: Mapping[str, Any], keys: tuple[str, ...], expected: int,
            of: str, n: int, where: str) -> list[float] | None:
    key = next((k for k in keys if k in rec), None)
    if key is None or rec[key] is None:
        return None
    value = rec[key]
    if not isinstance(value, list) or any(
            isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
        raise BadRecordError(path, f"field '{key}' must be a list of numbers", n, where,
                             "wrong type")
    if len(value) != expected:
        raise BadRecordError(path, f"field '{key}' has {len(value)} scores for {expected} "
                                   f"entries of '{of}'", n, where, "wrong type")
    return [float(v) for v in value]


def _optional_str(path: Path, rec: Mapping[str, Any], key: str, n: int,
                  where: str) -> str | None:
    value = rec.get(key)
    if value is None or isinstance(value, str):
        return value
    raise BadRecordError(path, f"field '{key}' must be a string, got {_describe(value)}", n,
                         where, "wrong type")


# -- reranking data --------------------------------------------------------------------------
@dataclass(frozen=True)
class RerankSample:
    """One reranking record: a query and the candidates to rank, as read. A passage listed as
    both positive and negative stays in both here; the evaluator drops (and counts) it."""

    qid: str
    query: str
    positive: list[str]
    negative: list[str]


@dataclass
class RerankSet:
    """Reranking samples of one file, with the field names it used (`positive`/`negative`
    or `pos`/`neg`), so a split of it can be written back in the same form."""

    name: str
    samples: list[RerankSample]
    source: str
    keys: tuple[str, str] = ("positive", "negative")

    def __len__(self) -> int:
        return len(self.samples)


_RERANK_FORMATS = {
    ("positive", "negative"): "T2Reranking {query, positive, negative}",
    ("pos", "neg"): "FlagEmbedding {query, pos, neg}",
}


def load_rerank_with_report(path: str | Path, *, name: str | None = None,
                            skip_bad: bool = False) -> tuple[RerankSet, LoadReport]:
    """Load C-MTEB reranking data `{"query", "positive": [...], "negative": [...]}` (also
    FlagEmbedding's `pos`/`neg` names; the first record decides which).

    Unlike a query file, an empty `positive` or `negative` list is not a bad record: mteb's
    evaluator skips such samples, so the evaluator counts them as skipped. A record without
    the negative field is bad (nothing to rank against), and a first record without one
    stops the load, since the file is then most likely a query file for `embedarena eval`.
    The qid is an `id`/`qid`/`_id` field when there is one, else the 1-based line number.
    """
    p = Path(path)
    _check_file(p)
    report = LoadReport(str(p), "reranking")
    guard = RecordGuard(report, skip_bad)
    keys: tuple[str, str] | None = None
    samples: list[RerankSample] = []
    seen: dict[str, int] = {}
    for n, rec in iter_json_values(p, report, guard):
        where = report.unit
        if not isinstance(rec, dict):
            guard(BadRecordError(p, f"expected an object, got {_describe(rec)}", n, where,
                                 "wrong type"))
            continue
        if keys is None:
            keys = next((k for k in _RERANK_FORMATS if k[0] in rec), None)
            if keys is None or keys[1] not in rec:
                raise DataError(p, "not reranking data: the first record needs 'positive' and "
                                   "'negative' (or 'pos' and 'neg') lists; fields here: "
                                   f"{', '.join(rec) or 'none'} (a query file goes to "
                                   "`embedarena eval`)", line=n, where=where)
            report.format = _RERANK_FORMATS[keys]
        try:
            text = _query_text(p, rec, n, where)
            for key in keys:
                if key not in rec:
                    raise BadRecordError(p, f"missing field '{key}'", n, where,
                                         "missing field")
            pos, neg = (_string_list(p, rec, key, n, where, report) for key in keys)
            qid = _explicit_qid(p, rec, n, where) or str(n)
            if qid in seen:
                raise BadRecordError(p, f"duplicate query id {qid!r} (first at {where} "
                                        f"{seen[qid]})", n, where, "duplicate id")
        except BadRecordError as e:
            guard(e)
            continue
        seen[qid] = n
        samples.append(RerankSample(qid, text, pos, neg))
    report.loaded = len(samples)
    _check_loaded(p, report)
    return RerankSet(name or p.stem, samples, str(p), keys or ("positive", "negative")), report


# -- writers ---------------------------------------------------------------------------------
def _atomic_write(path: Path, write: Any) -> None:
    """Write to a temp file beside `path`, then rename, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl(path: str | Path, records: Iterable[Mapping[str, Any] | TrainExample]) -> int:
    """Write one JSON object per line (UTF-8, Chinese kept readable); returns the count."""
    count = 0

    def write(f: Any) -> None:
        nonlocal count
        for rec in records:
            obj = rec.to_dict() if isinstance(rec, TrainExample) else dict(rec)
            f.write(json.dumps(obj, ensure_ascii=False))
            f.write("\n")
            count += 1

    _atomic_write(Path(path), write)
    return count


def write_labels(path: str | Path, labels: Iterable[str]) -> int:
    """Write a label corpus as a JSON list of strings (seed 004's label.json); returns the
    count."""
    items = list(labels)

    def write(f: Any) -> None:
        json.dump(items, f, ensure_ascii=False, indent=2)
        f.write("\n")

    _atomic_write(Path(path), write)
    return len(items)
