"""`embedarena data prepare`: turn a labelled spreadsheet into train/test JSONL and a label corpus.

The spreadsheet is shaped like seed 004's disease.xlsx: a question column and several label
columns (Label, Label2, Label4, Label4 again, ...). Rows without a question or without any label
are dropped and counted; each kept row's labels become its `pos`; train rows get N random
negative labels that are never one of the row's positives; the split and the negatives are
seeded, so the same input and seed always give the same files. The counts let a user check
that rows in == rows out.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from embedarena.data.readers import read_table, write_jsonl, write_labels
from embedarena.errors import ConfigError, DataError

DROP_BLANK = "blank row"
DROP_NO_QUESTION = "empty question"
DROP_NO_LABEL = "no label"


@dataclass(frozen=True)
class LabelledRow:
    row: int
    query: str
    pos: list[str]


@dataclass
class PrepareResult:
    """What `prepare_spreadsheet` read, dropped (by reason) and wrote."""

    source: str
    rows_read: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    train: int = 0
    test: int = 0
    labels: int = 0
    label_columns: list[str] = field(default_factory=list)
    negatives: int = 0
    rows_short_of_negatives: int = 0
    duplicate_questions: int = 0
    test_labels_not_in_train: int = 0
    outputs: dict[str, Path] = field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        """Every row read is either dropped for a reason or written."""
        return self.rows_read == sum(self.dropped.values()) + self.train + self.test


def _column_letter(i: int) -> str:
    from openpyxl.utils import get_column_letter

    return get_column_letter(i + 1)


def read_labelled_rows(path: str | Path, *, question_column: str = "Question",
                       label_prefix: str = "Label", sheet: str | None = None,
                       encoding: str | None = None,
                       ) -> tuple[list[LabelledRow], PrepareResult]:
    """Rows with a question and at least one label; drops are counted in the result.

    Label columns are those whose header is the prefix optionally followed by a number
    (`Label`, `Label2`, `label 4`); repeated header names are separate columns, because
    `read_table` hands us the raw header cells (pandas reads the header as a plain row, so it
    never renames a repeat to `Label4.1`). Labels are stripped and de-duplicated within a row,
    first occurrence first. A row `read_table` cannot read (a formula without a cached value,
    bytes that do not decode) stops the run with its file and row: there is no skip here.
    `encoding` is for a CSV/TSV source (None: detect UTF-8, UTF-8 with BOM or GB18030).
    """
    table = read_table(path, sheet=sheet, encoding=encoding)
    result = PrepareResult(str(path))
    q_cols = [i for i, h in enumerate(table.header)
              if h.casefold() == question_column.strip().casefold()]
    if not q_cols:
        raise DataError(path, f"no question column '{question_column}' (columns: "
                              f"{', '.join(repr(h) for h in table.header if h) or 'none'})",
                        line=1, where=table.where)
    if len(q_cols) > 1:
        letters = ", ".join(_column_letter(i) for i in q_cols)
        raise DataError(path, f"the question column '{question_column}' appears "
                              f"{len(q_cols)} times (columns {letters})", line=1,
                        where=table.where)
    qi = q_cols[0]
    pattern = re.compile(rf"^{re.escape(label_prefix.strip())}\s*\d*$", re.IGNORECASE)
    label_cols = [i for i, h in enumerate(table.header) if pattern.match(h) and i != qi]
    if not label_cols:
        raise DataError(path, f"no label columns named '{label_prefix}', '{label_prefix}2', ... "
                              f"(columns: {', '.join(repr(h) for h in table.header if h)})",
                        line=1, where=table.where)
    result.label_columns = [f"{table.header[i]} ({_column_letter(i)})" for i in label_cols]
    rows: list[LabelledRow] = []
    for n, cells in table.rows:
        result.rows_read += 1
        if not any(cells):
            result.dropped[DROP_BLANK] = result.dropped.get(DROP_BLANK, 0) + 1
            continue
        query = cells[qi] if qi < len(cells) else ""
        if not query:
            result.dropped[DROP_NO_QUESTION] = result.dropped.get(DROP_NO_QUESTION, 0) + 1
            continue
        pos = list(dict.fromkeys(cells[i] for i in label_cols if i < len(cells) and cells[i]))
        if not pos:
            result.dropped[DROP_NO_LABEL] = result.dropped.get(DROP_NO_LABEL, 0) + 1
            continue
        rows.append(LabelledRow(n, query, pos))
    return rows, result


def parse_test_size(value: str | float) -> float | int:
    """`0.1` is a fraction of the rows, `234` a number of rows."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"test size must be a fraction (0.1) or a row count (234), "
                          f"got {value!r}") from None
    if 0 < number < 1:
        return number
    if number >= 1 and number.is_integer():
        return int(number)
    raise ConfigError(f"test size must be a fraction between 0 and 1 or a whole number of "
                      f"rows, got {value!r}")


def split_indices(n: int, test_size: float | int, seed: int) -> tuple[list[int], list[int]]:
    """Seeded split of row positions into (train, test), each in the original order."""
    if n < 2:
        raise ConfigError(f"need at least 2 rows to split into train and test, got {n}")
    if isinstance(test_size, float):
        n_test = min(n - 1, max(1, round(n * test_size)))
    else:
        n_test = test_size
        if n_test >= n:
            raise ConfigError(f"test size {n_test} leaves no training rows ({n} usable rows)")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    test = sorted(order[:n_test])
    test_set = set(test)
    return [i for i in range(n) if i not in test_set], test


def sample_negatives(pos: list[str], labels: list[str], k: int,
                     rng: random.Random) -> list[str]:
    """Up to `k` labels drawn without replacement from those that are not positives."""
    pos_set = set(pos)
    candidates = [label for label in labels if label not in pos_set]
    return rng.sample(candidates, min(k, len(candidates)))


def prepare_spreadsheet(
    path: str | Path, out_dir: str | Path, *, question_column: str = "Question",
    label_prefix: str = "Label", negatives: int = 10, test_size: float | int = 0.1,
    seed: int = 42, sheet: str | None = None, train_name: str = "train.jsonl",
    test_name: str = "test.jsonl", labels_name: str = "label.json", encoding: str | None = None,
) -> PrepareResult:
    """Write `train.jsonl` `{query, pos, neg}`, `test.jsonl` `{query, pos}` and `label.json`
    (every distinct label, first occurrence first) from an XLSX or CSV file."""
    if negatives < 0:
        raise ConfigError(f"negatives must be 0 or more, got {negatives}")
    test_size = parse_test_size(test_size)
    rows, result = read_labelled_rows(path, question_column=question_column,
                                      label_prefix=label_prefix, sheet=sheet, encoding=encoding)
    if len(rows) < 2:
        dropped = ", ".join(f"{k}: {v}" for k, v in result.dropped.items()) or "none"
        raise DataError(path, f"need at least 2 usable rows to split, got {len(rows)} "
                              f"({result.rows_read} rows read; dropped {dropped})")
    labels = list(dict.fromkeys(label for r in rows for label in r.pos))
    train_idx, test_idx = split_indices(len(rows), test_size, seed)
    rng = random.Random(f"negatives:{seed}")
    train_records = []
    for i in train_idx:
        r = rows[i]
        neg = sample_negatives(r.pos, labels, negatives, rng)
        if len(neg) < negatives:
            result.rows_short_of_negatives += 1
        train_records.append({"query": r.query, "pos": r.pos, "neg": neg})
    test_records = [{"query": rows[i].query, "pos": rows[i].pos} for i in test_idx]
    out = Path(out_dir)
    result.outputs = {"train": out / train_name, "test": out / test_name,
                      "labels": out / labels_name}
    result.train = write_jsonl(result.outputs["train"], train_records)
    result.test = write_jsonl(result.outputs["test"], test_records)
    result.labels = write_labels(result.outputs["labels"], labels)
    result.negatives = negatives
    result.duplicate_questions = len(rows) - len({r.query for r in rows})
    train_labels = {label for i in train_idx for label in rows[i].pos}
    result.test_labels_not_in_train = len(
        {label for i in test_idx for label in rows[i].pos} - train_labels)
    return result
