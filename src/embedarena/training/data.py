"""Training groups for contrastive fine-tuning: gold sets, per-epoch sampling, collation.

A *group* is one query with 1 positive + (train_group_size - 1) negatives, drawn afresh each
epoch from the row's `pos`/`neg` (FlagEmbedding's semantics). Each passage carries a 63-bit key
(a hash of its text) and each query the keys of all its gold passages, gathered across every
row of the same query text, so the loss can mask in-batch false negatives: another item's
passage that is also a gold label of this query.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from embedarena.data.readers import TrainExample
from embedarena.errors import ConfigError


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
