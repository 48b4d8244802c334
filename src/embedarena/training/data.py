"""Training data for every trainer: gold sets, per-epoch group sampling, pairs, collation.

A *group* is one query with 1 positive + (train_group_size - 1) negatives, drawn afresh each
epoch from the row's `pos`/`neg` (FlagEmbedding's semantics). Each passage carries a 63-bit key
(a hash of its text) and each query the keys of all its gold passages, gathered across every
row of the same query text, so the loss can mask in-batch false negatives: another item's
passage that is also a gold label of this query.

Cross-encoders read the same groups (listwise loss) or *scored pairs* (pointwise losses): from
the train JSONL, positives score 1 and negatives 0; from a graded `query<TAB>doc<TAB>label`
TSV, each label is mapped to a target in 0..1. `PairCollator` tokenises either as
(query, passage) pairs.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedarena.data.readers import (
    BadRecordError,
    LoadReport,
    TrainExample,
    detect_encoding,
    iter_lines,
    load_train_with_report,
)
from embedarena.errors import ConfigError, DataError


def text_key(text: str) -> int:
    """A stable signed 63-bit key for a passage text (equal texts, equal keys, any process)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(),
                          "big") >> 1


def gold_by_query(examples: Sequence[TrainExample]) -> dict[str, set[str]]:
    """Every positive of each query text, gathered across all rows with that query.

    Label data often has one row per (query, label): a query's other labels are gold too and
    must never be used or mined as its negatives.
    """
    gold: dict[str, set[str]] = {}
    for ex in examples:
        gold.setdefault(ex.query, set()).update(ex.pos)
    return gold


@dataclass
class GroupStats:
    """What building the groups changed, so nothing is dropped silently."""

    rows: int = 0
    negatives_removed_as_gold: int = 0
    rows_without_negatives: int = 0
    rows_padded_with_repeats: int = 0
    notes: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"{self.rows} training rows"]
        if self.negatives_removed_as_gold:
            out.append(f"{self.negatives_removed_as_gold} negatives removed because they are "
                       "gold for the same query in another row")
        if self.rows_without_negatives:
            out.append(f"{self.rows_without_negatives} rows without negatives: their group is "
                       "filled with random passages from the training pool (never gold)")
        if self.rows_padded_with_repeats:
            out.append(f"{self.rows_padded_with_repeats} rows with fewer negatives than "
                       "train_group_size - 1: negatives repeat, as in FlagEmbedding")
        return out


@dataclass(frozen=True)
class TrainRow:
    query: str
    pos: tuple[str, ...]
    neg: tuple[str, ...]
    gold_keys: tuple[int, ...]
    prompt: str | None = None


class GroupDataset:
    """A torch-style dataset of training groups; `set_epoch` reseeds the per-epoch draw.

    Item i in epoch e is drawn from `Random((seed, e, i))`, so a resumed run sees exactly the
    groups the uninterrupted run would have seen.
    """

    def __init__(self, examples: Sequence[TrainExample], train_group_size: int = 8,
                 seed: int = 42) -> None:
        if train_group_size < 1:
            raise ConfigError("train_group_size is at least 1 (the positive)")
        self.train_group_size = train_group_size
        self.seed = seed
        self.epoch = 0
        self.stats = GroupStats()
        gold = gold_by_query(examples)
        pool = list(dict.fromkeys(t for ex in examples for t in (*ex.pos, *ex.neg)))
        self.pool = pool
        rows: list[TrainRow] = []
        for ex in examples:
            g = gold[ex.query]
            neg = tuple(n for n in ex.neg if n not in g)
            self.stats.negatives_removed_as_gold += len(ex.neg) - len(neg)
            if train_group_size > 1:
                if not neg:
                    self.stats.rows_without_negatives += 1
                elif len(neg) < train_group_size - 1:
                    self.stats.rows_padded_with_repeats += 1
            rows.append(TrainRow(ex.query, tuple(ex.pos), neg,
                                 tuple(sorted(text_key(t) for t in g)), ex.prompt))
        self.rows = rows
        self.stats.rows = len(rows)
        self._gold = gold
        if self.stats.rows_without_negatives and len(pool) <= 1:
            raise ConfigError("rows without negatives need other passages to sample from, but "
                              "the training data has a single passage")

    def __len__(self) -> int:
        return len(self.rows)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.rows[i]
        rng = random.Random(f"{self.seed}:{self.epoch}:{i}")
        pos = rng.choice(row.pos)
        need = self.train_group_size - 1
        negs: list[str] = []
        if need > 0:
            if row.neg:
                if len(row.neg) >= need:
                    negs = rng.sample(row.neg, need)
                else:
                    negs = [rng.choice(row.neg) for _ in range(need)]
            else:
                gold = self._gold[row.query]
                for _ in range(need * 20):
                    cand = rng.choice(self.pool)
                    if cand not in gold:
                        negs.append(cand)
                        if len(negs) == need:
                            break
                if len(negs) < need:
                    raise ConfigError(f"query {row.query[:40]!r}: every passage in the training "
                                      "data is gold for it, none can be a negative")
        return {"query": row.query, "passages": [pos, *negs], "gold_keys": row.gold_keys,
                "prompt": row.prompt}


class GroupCollator:
    """Tokenises a list of groups into query/passage batches plus the keys the loss masks by.

    `query_instruction` is prepended to every query unless a row has its own `prompt`
    (FlagEmbedding's newer data format), which wins.
    """

    def __init__(self, tokenizer: Any, query_max_len: int = 64, passage_max_len: int = 256,
                 query_instruction: str = "") -> None:
        self.tokenizer = tokenizer
        self.query_max_len = query_max_len
        self.passage_max_len = passage_max_len
        self.query_instruction = query_instruction

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        queries = [(it["prompt"] if it.get("prompt") is not None else self.query_instruction)
                   + it["query"] for it in items]
        passages = [p for it in items for p in it["passages"]]
        q = self.tokenizer(queries, padding=True, truncation=True,
                           max_length=self.query_max_len, return_tensors="pt")
        p = self.tokenizer(passages, padding=True, truncation=True,
                           max_length=self.passage_max_len, return_tensors="pt")
        width = max(len(it["gold_keys"]) for it in items)
        gold = torch.zeros((len(items), width), dtype=torch.long)
        gold_mask = torch.zeros((len(items), width), dtype=torch.bool)
        for r, it in enumerate(items):
            keys = it["gold_keys"]
            gold[r, :len(keys)] = torch.tensor(keys, dtype=torch.long)
            gold_mask[r, :len(keys)] = True
        return {
            "query": dict(q), "passage": dict(p),
            "passage_keys": torch.tensor([text_key(t) for t in passages], dtype=torch.long),
            "query_gold": gold, "query_gold_mask": gold_mask,
        }


def load_train_files(paths: Sequence[str]) -> tuple[list[TrainExample], list[str]]:
    """Every train JSONL, concatenated, with one load summary line per file."""
    examples: list[TrainExample] = []
    notes: list[str] = []
    for p in paths:
        ex, report = load_train_with_report(p)
        examples.extend(ex)
        notes.append(report.summary())
    if not examples:
        raise ConfigError("no training examples")
    return examples, notes


# -- scored pairs (pointwise cross-encoder losses) -------------------------------------------
@dataclass(frozen=True)
class ScoredPair:
    """One (query, passage) pair and its target score in 0..1."""

    query: str
    passage: str
    target: float


def is_graded_tsv(path: str | Path) -> bool:
    """Graded `query<TAB>doc<TAB>label` files are `.tsv`/`.txt` (as for query files); JSON
    and JSONL are train rows."""
    return Path(path).suffix.lower() in (".tsv", ".txt")


def _label_key(label: str) -> str | float:
    """Labels match as numbers when they are numbers (`3` is `3.0`), else as text."""
    try:
        return float(label)
    except ValueError:
        return label.strip()


def load_graded_pairs(path: str | Path, label_map: Mapping[str, float],
                      ) -> tuple[list[ScoredPair], LoadReport]:
    """Read `query<TAB>doc<TAB>label` lines (RAG-Retrieval's graded reranker data), mapping
    each label through `label_map`. A first line whose label is neither mapped nor a number
    is a header and skipped; a label outside the map is a `DataError` naming the file and
    line, since guessing a target for it would train on a made-up score."""
    p = Path(path)
    if not p.is_file():
        raise DataError(p, "no such file")
    report = LoadReport(str(p), "train", format="graded TSV query<TAB>doc<TAB>label",
                        unit="line")
    lookup = {_label_key(k): v for k, v in label_map.items()}
    known = ", ".join(f"{k}→{v:g}" for k, v in label_map.items())
    encoding = detect_encoding(p.read_bytes()) or "utf-8"
    pairs: list[ScoredPair] = []
    first = True
    for n, line in iter_lines(p, None, encoding=encoding):
        if not line.strip():
            continue
        parts = line.split("\t")
        label = parts[-1].strip()
        key = _label_key(label)
        if first and len(parts) == 3 and key not in lookup and isinstance(key, str):
            first = False
            report.note("header line skipped")
            continue
        first = False
        report.read += 1
        if len(parts) != 3:
            raise BadRecordError(p, f"expected 3 tab-separated fields (query, doc, label), "
                                    f"got {len(parts)}", n, "line", "bad row")
        query, doc = parts[0].strip(), parts[1].strip()
        if not query or not doc:
            raise BadRecordError(p, "empty query or doc", n, "line", "bad row")
        if key not in lookup:
            raise BadRecordError(p, f"label {label!r} is not in the label map ({known}); "
                                    "pass --label-map with every label the file uses", n,
                                 "line", "unknown label")
        pairs.append(ScoredPair(query, doc, lookup[key]))
        report.note(f"label {label}")
    report.loaded = len(pairs)
    if not pairs:
        raise DataError(p, "file has no training pairs")
    return pairs, report


@dataclass
class PairStats:
    """How train rows became pairs, so nothing is dropped silently."""

    pairs: int = 0
    positives: int = 0
    negatives_removed_as_gold: int = 0
    duplicates_removed: int = 0

    def lines(self) -> list[str]:
        out = [f"{self.pairs} training pairs ({self.positives} positive, "
               f"{self.pairs - self.positives} negative)"]
        if self.negatives_removed_as_gold:
            out.append(f"{self.negatives_removed_as_gold} negatives removed because they are "
                       "gold for the same query in another row")
        if self.duplicates_removed:
            out.append(f"{self.duplicates_removed} repeated (query, passage) pairs kept once")
        return out


def pairs_from_examples(examples: Sequence[TrainExample]) -> tuple[list[ScoredPair], PairStats]:
    """Every (query, pos) pair with target 1 and every (query, neg) pair with target 0, as
    RAG-Retrieval's classification data; a negative that is gold for the query in another row
    is dropped (as in `GroupDataset`), and a repeated pair is kept once."""
    gold = gold_by_query(examples)
    stats = PairStats()
    seen: set[tuple[str, str]] = set()
    pairs: list[ScoredPair] = []
    for ex in examples:
        kept_neg = [t for t in ex.neg if t not in gold[ex.query]]
        stats.negatives_removed_as_gold += len(ex.neg) - len(kept_neg)
        for text, target in [(t, 1.0) for t in ex.pos] + [(t, 0.0) for t in kept_neg]:
            if (ex.query, text) in seen:
                stats.duplicates_removed += 1
                continue
            seen.add((ex.query, text))
            pairs.append(ScoredPair(ex.query, text, target))
    stats.pairs = len(pairs)
    stats.positives = sum(1 for x in pairs if x.target >= 0.5)
    return pairs, stats


def graded_lines(report: LoadReport) -> list[str]:
    """The label counts of a graded file, for the notes."""
    counts = Counter({k.removeprefix("label "): v for k, v in report.notes.items()
                      if k.startswith("label ")})
    return [f"{report.loaded} graded pairs from {report.path} (labels: "
            + ", ".join(f"{k}×{v}" for k, v in sorted(counts.items())) + ")"]


class PairDataset:
    """A torch-style dataset of scored pairs in the item shape `PairCollator` reads."""

    def __init__(self, pairs: Sequence[ScoredPair]) -> None:
        if not pairs:
            raise ConfigError("no training pairs")
        self.pairs = list(pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        x = self.pairs[i]
        return {"query": x.query, "passages": [x.passage], "targets": [x.target]}

    def targets(self) -> list[float]:
        return [x.target for x in self.pairs]


class PairCollator:
    """Tokenises items `{"query", "passages", "targets"?}` as (query, passage) pairs for a
    cross-encoder: a group's passages stay together, positive first, so the listwise loss can
    view the scores as (queries, group); pointwise items carry their targets.

    Pairs are truncated longest-first to `max_len` tokens, as FlagEmbedding's reranker does.
    """

    def __init__(self, tokenizer: Any, max_len: int = 512) -> None:
        self.tokenizer = tokenizer
        self.max_len = max_len

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        queries = [it["query"] for it in items for _ in it["passages"]]
        passages = [p for it in items for p in it["passages"]]
        enc = self.tokenizer(queries, passages, padding=True, truncation=True,
                             max_length=self.max_len, return_tensors="pt")
        out: dict[str, Any] = {"pairs": dict(enc)}
        if all("targets" in it for it in items):
            out["targets"] = torch.tensor([t for it in items for t in it["targets"]],
                                          dtype=torch.float32)
        return out

