"""Hard-negative mining, compatible with FlagEmbedding's `hn_mine` and label-aware.

For each row of a train JSONL, search the candidate pool (a `candidate_pool` file, else every
pos/neg passage of the input) with the query, take the hits ranked `range_for_sampling`
(a-b, 0-based, end exclusive, as hn_mine slices them), drop the ones that must not be
negatives, and sample `negative_number` of the rest as the row's new `neg`.

Dropped, and counted:
* **gold** of the query: every `pos` of every row with the same query text. hn_mine only
  drops the row's own `pos`, so with one row per label a query's other labels are mined as its
  negatives (FlagEmbedding issue #194);
* the query text itself (as hn_mine does);
* with `margin`: candidates scoring within `margin` of the row's weakest positive
  (score > min positive score - margin), which are most likely unlabeled positives or
  near-duplicates.

Search: in process with faiss (on the GPU when faiss-gpu and CUDA are there) or exact torch
matmul (CUDA when available), or against an Elasticsearch index (the model's index over the
pool, built or reused by the indexer). `bm25` mines lexically (in process, or ES's BM25).
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from embedarena.data.readers import TrainExample
from embedarena.errors import ConfigError, DataError
from embedarena.training.data import gold_by_query

if TYPE_CHECKING:
    import numpy as np

Backend = Literal["auto", "faiss", "torch", "es"]


def parse_range(text: str | Sequence[int]) -> tuple[int, int]:
    """`"10-210"` (or `[10, 210]`) → (10, 210); a < b, a ≥ 0."""
    if isinstance(text, str):
        m = re.fullmatch(r"\s*(\d+)\s*[-:,]\s*(\d+)\s*", text)
        if not m:
            raise ConfigError(f"range_for_sampling is 'a-b' (e.g. 10-210), not {text!r}")
        a, b = int(m.group(1)), int(m.group(2))
    else:
        if len(text) != 2:
            raise ConfigError(f"range_for_sampling has two numbers, not {list(text)}")
        a, b = int(text[0]), int(text[1])
    if not 0 <= a < b:
        raise ConfigError(f"range_for_sampling {a}-{b}: need 0 ≤ a < b")
    return a, b


@dataclass
class MineConfig:
    model: Any = "minilm"
    range_for_sampling: tuple[int, int] = (10, 210)
    negative_number: int = 15
    candidate_pool: str | None = None
    query_instruction: str = ""
    seed: int = 42
    margin: float | None = None
    backend: Backend = "auto"
    use_gpu: bool = True
    cache: bool = True
    #: Alias prefix of the Elasticsearch index over the pool (backend `es`).
    index_prefix: str = "embedarena-mine-"

    def check(self) -> None:
        if self.negative_number < 1:
            raise ConfigError("negative_number is at least 1")
        parse_range(self.range_for_sampling)
        if self.backend not in ("auto", "faiss", "torch", "es"):
            raise ConfigError(f"backend is auto, faiss, torch or es, not {self.backend!r}")


@dataclass
class MineStats:
    rows: int = 0
    queries: int = 0
    pool: int = 0
    backend: str = ""
    negatives_written: int = 0
    rows_with_too_few: int = 0
    rows_without_negatives: int = 0
    dropped_own_pos: int = 0
    dropped_gold_other_rows: int = 0
    dropped_query_text: int = 0
    dropped_margin: int = 0
    neg_scores_dropped: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def table(self) -> list[tuple[str, str]]:
        a = [("rows (in = out)", str(self.rows)), ("distinct queries", str(self.queries)),
             ("candidate pool", str(self.pool)), ("search", self.backend),
             ("negatives written", str(self.negatives_written)),
             ("rows with fewer than negative_number", str(self.rows_with_too_few)),
             ("rows with no negative", str(self.rows_without_negatives)),
             ("candidates dropped: the row's own pos", str(self.dropped_own_pos)),
             ("candidates dropped: gold from another row of the query",
              str(self.dropped_gold_other_rows)),
             ("candidates dropped: the query text", str(self.dropped_query_text)),
             ("candidates dropped: within margin", str(self.dropped_margin)),
             ("seconds", f"{self.seconds:.1f}")]
        if self.neg_scores_dropped:
            a.append(("rows whose old neg_scores were dropped", str(self.neg_scores_dropped)))
        return a


# -- candidate pool --------------------------------------------------------------------------
def load_pool(path: str | Path) -> list[str]:
    """A candidate pool: hn_mine's JSONL `{"text": ...}`, or any corpus embedarena reads
    (label.json list, records, CSV/XLSX column)."""
    from embedarena.data.readers import LoadReport, RecordGuard, iter_json_values, load_corpus

    p = Path(path)
    if not p.is_file():
        raise DataError(p, "candidate pool file not found")
    if p.suffix in (".jsonl", ".json"):
        report = LoadReport(str(p), "pool", format="hn_mine pool")
        texts: list[str] = []
        first = True
        for n, rec in iter_json_values(p, report, RecordGuard(report, skip_bad=False)):
            if first and not (isinstance(rec, dict) and "text" in rec):
                break
            first = False
            if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
                raise DataError(p, "expected {\"text\": str}", line=n)
            texts.append(rec["text"])
        if texts:
            return list(dict.fromkeys(texts))
    corpus = load_corpus(p)
    return list(dict.fromkeys(corpus.texts))


# -- in-process lexical search ---------------------------------------------------------------
# `bm25[:chain]` mines with `embedarena.indexer.bm25.LocalBM25`: the chain's one tokenizer and
# the node's BM25 arithmetic, so in-process mining ranks as the ES row of the same name does.


# -- in-process dense search -----------------------------------------------------------------
def dense_search(queries: np.ndarray, docs: np.ndarray, k: int, backend: str = "auto",
                 use_gpu: bool = True) -> tuple[np.ndarray, np.ndarray, str]:
    """Exact inner-product top-k (`embedarena.indexer.exact`: faiss, torch or numpy).

    Returns (scores, indices, what ran); rows with fewer than k docs are padded with -1.
    """
    from embedarena.indexer.exact import exact_search

    res = exact_search(queries, docs, k, "dot_product",
                       backend="auto" if backend == "auto" else backend,  # type: ignore[arg-type]
                       use_gpu=use_gpu)
    return res.scores, res.indices, res.backend


def _normalize(x: np.ndarray) -> np.ndarray:
    import numpy as np

    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.clip(n, 1e-12, None)


# -- mining ----------------------------------------------------------------------------------
Ranked = list[list[tuple[int, float]]]


def _search_in_process(cfg: MineConfig, queries: list[str], pool: list[str], depth: int,
                       pos_texts: list[str], stats: MineStats
                       ) -> tuple[Ranked, Callable[[int, Sequence[str]], list[float]]]:
    spec = mining_spec(cfg.model)
    qtexts = [cfg.query_instruction + q for q in queries]
    if spec.type == "bm25":
        from embedarena.indexer.bm25 import LocalBM25

        bm = LocalBM25(pool, spec.analyzer)  # ConfigError for a chain only ES can analyse
        stats.backend = f"{spec.name} (in process, chain {bm.chain.name})"
        ranked = [bm.search(q, depth) for q in qtexts]

        def lex_scores(qi: int, texts: Sequence[str]) -> list[float]:
            return [bm.score(qtexts[qi], t) for t in texts]

        return ranked, lex_scores
    from embedarena.embedders.registry import create_embedder

    emb: Any = create_embedder(spec)
    if cfg.cache:
        from embedarena.embedders.cache import CachedEmbedder

        emb = CachedEmbedder(emb)
    qv = emb.embed_queries(qtexts)
    dv = emb.embed_documents(pool)
    if not emb.normalized:
        qv, dv = _normalize(qv), _normalize(dv)
    s, i, where = dense_search(qv, dv, depth, cfg.backend, cfg.use_gpu)
    stats.backend = f"{spec.name} ({where})"
    ranked = [[(int(ix), float(sc)) for ix, sc in zip(ri, rs) if ix >= 0]
              for ri, rs in zip(i, s)]
    pos_index = {t: n for n, t in enumerate(pool)}
    missing = [t for t in dict.fromkeys(pos_texts) if t not in pos_index]
    extra = emb.embed_documents(missing) if missing and cfg.margin is not None else None
    if extra is not None and not emb.normalized:
        extra = _normalize(extra)
    extra_index = {t: n for n, t in enumerate(missing)}

    def dense_scores(qi: int, texts: Sequence[str]) -> list[float]:
        out = []
        for t in texts:
            vec = dv[pos_index[t]] if t in pos_index else (
                extra[extra_index[t]] if extra is not None else None)
            out.append(float(qv[qi] @ vec) if vec is not None else math.nan)
        return out

    return ranked, dense_scores


#: An outside search (the arena's Elasticsearch index over the pool): (queries, pool, depth)
#: → (ranked (pool index, score) per query, scorer of given texts for --margin or None, what
#: ran).
Search = Callable[[list[str], list[str], int],
                  tuple[Ranked, Callable[[int, Sequence[str]], list[float]] | None, str]]


def mining_spec(model: Any) -> Any:
    """The mining model: an embedder spec or `bm25[:chain]` (parsed once)."""
    from embedarena.embedders.base import EmbedderSpec
    from embedarena.embedders.registry import load_builtins
    from embedarena.indexer.lexical import BM25Spec
    from embedarena.specs import parse_spec

    load_builtins()
    return parse_spec(model, allowed=(EmbedderSpec, BM25Spec))


def mine(examples: Sequence[TrainExample], cfg: MineConfig,
         pool: Sequence[str] | None = None,
         search: Search | None = None) -> tuple[list[TrainExample], MineStats]:
    """New negatives for every row (same order, same count); see the module docstring.

    `search` replaces the in-process search (`backend: es` passes the arena's index search).
    """
    cfg.check()
    t0 = time.monotonic()
    a, b = parse_range(cfg.range_for_sampling)
    stats = MineStats(rows=len(examples))
    gold = gold_by_query(examples)
    if pool is None:
        pool = list(dict.fromkeys(t for ex in examples for t in (*ex.pos, *ex.neg)))
    pool = list(pool)
    stats.pool = len(pool)
    if not pool:
        raise ConfigError("the candidate pool is empty")
    queries = list(dict.fromkeys(ex.query for ex in examples))
    stats.queries = len(queries)
    qindex = {q: n for n, q in enumerate(queries)}
    pos_texts = [t for ex in examples for t in ex.pos]
    if search is not None:
        ranked, es_scores, stats.backend = search(queries, pool, b)
        if cfg.margin is not None and es_scores is None:
            raise ConfigError("--margin with bm25 on Elasticsearch is not supported (positives "
                              "would need scoring outside the index); mine bm25 in process")
        score_fn: Callable[[int, Sequence[str]], list[float]] = es_scores or (
            lambda qi, texts: [math.nan] * len(texts))
    elif cfg.backend == "es":
        raise ConfigError("backend es searches an Elasticsearch index: run it through "
                          "`embedarena mine` or `embedarena.arena.mine_file`")
    else:
        ranked, score_fn = _search_in_process(cfg, queries, pool, b, pos_texts, stats)
    out: list[TrainExample] = []
    for n, ex in enumerate(examples):
        qi = qindex[ex.query]
        own = set(ex.pos)
        g = gold[ex.query]
        floor = None
        if cfg.margin is not None:
            ps = [s for s in score_fn(qi, ex.pos) if not math.isnan(s)]
            floor = (min(ps) - cfg.margin) if ps else None
        keep: list[int] = []
        for ix, score in ranked[qi][a:b]:
            text = pool[ix]
            if text in own:
                stats.dropped_own_pos += 1
            elif text in g:
                stats.dropped_gold_other_rows += 1
            elif text == ex.query:
                stats.dropped_query_text += 1
            elif floor is not None and score > floor:
                stats.dropped_margin += 1
            else:
                keep.append(ix)
        rng = random.Random(f"{cfg.seed}:{n}")
        if len(keep) > cfg.negative_number:
            keep = rng.sample(keep, cfg.negative_number)
        if len(keep) < cfg.negative_number:
            stats.rows_with_too_few += 1
        if not keep:
            stats.rows_without_negatives += 1
        if ex.neg_scores is not None:
            stats.neg_scores_dropped += 1
        neg = [pool[ix] for ix in keep]
        stats.negatives_written += len(neg)
        out.append(TrainExample(ex.query, list(ex.pos), neg, ex.pos_scores, None, ex.prompt,
                                ex.type))
    stats.seconds = time.monotonic() - t0
    if len(out) != len(examples):
        raise RuntimeError(f"mined {len(out)} rows for {len(examples)} input rows")
    return out, stats


def mine_file(input_path: str | Path, output_path: str | Path,
              cfg: MineConfig, search: Search | None = None) -> MineStats:
    """Read a train JSONL, mine, and write the same format (atomically)."""
    from embedarena.data.readers import load_train_with_report, write_jsonl

    examples, report = load_train_with_report(input_path)
    pool = load_pool(cfg.candidate_pool) if cfg.candidate_pool else None
    out, stats = mine(examples, cfg, pool, search)
    stats.notes.append(report.summary())
    write_jsonl(output_path, out)
    return stats
