"""Retrieval metrics as pure functions, a registry of them, parsed specs and per-query results.

Everything here works on plain lists and dicts (ranked doc ids, gold id → gain), so the same code
scores Elasticsearch runs, faiss runs and reranker runs, and can be checked against ir-measures.

Conventions (all tested against ir-measures / pytrec_eval in tests/evaluation/test_metrics.py):

- **relevant** means gain > 0; 0-grade judgements are kept (judged non-relevant) and never count.
- **precise@k** (seed 004) is 1 for a query iff *every* relevant gold id is in the top k, so a
  query with more relevant ids than k always scores 0. It is *not* precision@k.
- **precision@k** is the standard P@k: relevant ids in the top k divided by k (trec_eval: by k
  even when fewer than k documents were retrieved).
- **map@k** is trec_eval's `map_cut.k` / ir-measures `AP@k`: the sum of precision at each
  relevant rank within the top k, divided by the *total* number of relevant ids (not by
  min(k, |rel|)), so a cutoff smaller than |rel| caps the score below 1.
- **ndcg@k** is trec_eval's `ndcg_cut.k` / ir-measures `nDCG@k`: linear gain (the grade itself),
  discount log2(rank + 1), ideal ranking built from all judged gains and cut at k.
- **mrr@k** is 1/rank of the first relevant id within the top k, else 0.
- Three metrics are all called "Recall@k" somewhere, so each has its own name here:
  **recall@k** = relevant found in the top k / |relevant| (ir-measures `R@k`, trec_eval
  `recall_k`); **hit@k** = 1 if any relevant is in the top k (ir-measures `Success@k`);
  **r_cap@k** = relevant found in the top k / min(k, |relevant|) (BEIR's `R_cap@k`, capped
  recall: it reaches 1 when the top k is all relevant, however many relevant there are; it
  is recall@k when |relevant| <= k and precision@k otherwise). FlagEmbedding's
  `eval_msmarco.py` printed each of these as "Recall@k" in turn during 2024.
- **Duplicate ids** in a ranked list count at their first occurrence only: a repeated id keeps
  its rank slot (it was shown to the user) but earns nothing. trec_eval itself rejects
  duplicate docnos and ir-measures runs are dicts, so this is the only consistent reading.
- **Queries with no relevant gold** cannot be right or wrong: they are excluded from every
  metric (NaN in the per-query arrays, left out of the means) and counted in `n_excluded`,
  never silently scored 0.
- **Tied scores** keep the engine's order: a ranked list is scored as returned, because that
  order is what a user sees. trec_eval (and so ir-measures) re-sorts tied documents by doc id
  first, so on runs with ties its numbers can differ (nDCG@10 of a BM25 row on a Chinese label
  set by 0.002); on a run whose scores are replaced by strictly decreasing values in our order
  they agree exactly (tests/evaluation/test_metrics_reference.py). How much this can matter is
  counted: `RunMetrics.ties` (metrics.json `ties`) holds the evaluated queries with a tie
  within the largest cutoff evaluated and the number of tied ranks there (a rank is tied when
  another rank of the same list has the same score).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from embedarena.errors import ConfigError, DataError
from embedarena.evaluation.run import Run

MetricFn = Callable[[Sequence[str], Mapping[str, float], int | None], float]
"""(ranked doc ids, gold id → gain, cutoff or None for the full list) → value for one query."""

FloatArray = npt.NDArray[np.float64]

DEFAULT_METRICS = "precise@1,2,5,hit@5,recall@5,mrr@5,ndcg@5"
"""What `compare` reports when neither the user nor a saved metrics.json names metrics."""


@dataclass(frozen=True)
class MetricInfo:
    """A registered metric: its function and how it is cut off and displayed."""

    name: str
    fn: MetricFn
    cutoff_optional: bool
    """True when the metric also makes sense over the whole ranked list (`map`, `mrr`, `ndcg`)."""
    percent: bool
    """Shown as a percentage in tables (fractions of queries/documents); else as a 0-1 score."""
    summary: str


_REGISTRY: dict[str, MetricInfo] = {}


def register_metric(name: str, fn: MetricFn, *, cutoff_optional: bool = False,
                    percent: bool = False, summary: str = "") -> MetricInfo:
    """Add a metric under `name`; a name can be registered once (silent overrides hide bugs)."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"metric names are lowercase identifiers, got {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"metric {name!r} is already registered")
    info = MetricInfo(name=name, fn=fn, cutoff_optional=cutoff_optional, percent=percent,
                      summary=summary)
    _REGISTRY[name] = info
    return info


def metric_names() -> list[str]:
    """Registered metric names, for help texts, CLI choices and error messages."""
    return sorted(_REGISTRY)


def get_metric(name: str) -> MetricInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        hint = ""
        if name in ("p", "prec"):
            hint = (" ('p' is ambiguous: precise@k = every gold label in the top k, seed 004; "
                    "precision@k = fraction of the top k that is relevant)")
        raise ConfigError(f"unknown metric {name!r}{hint}; known metrics: "
                          + ", ".join(metric_names())) from None


# --- the metric functions -------------------------------------------------------------------


def _relevant(gold: Mapping[str, float]) -> set[str]:
    return {d for d, g in gold.items() if g > 0}


def _ranked(retrieved: Sequence[str], k: int | None) -> list[str | None]:
    """Top k with repeated ids replaced by None: a repeat keeps its slot but counts for nothing."""
    top = retrieved if k is None else retrieved[:k]
    seen: set[str] = set()
    out: list[str | None] = []
    for d in top:
        out.append(None if d in seen else d)
        seen.add(d)
    return out


def precise_at_k(retrieved: Sequence[str], gold: Mapping[str, float], k: int | None) -> float:
    """Seed 004: 1 iff every relevant gold id is within the top k."""
    rel = _relevant(gold)
    top = set(retrieved if k is None else retrieved[:k])
    return 1.0 if rel and rel <= top else 0.0


def hit_at_k(retrieved: Sequence[str], gold: Mapping[str, float], k: int | None) -> float:
    """1 iff at least one relevant id is within the top k (ir-measures `Success@k`)."""
    rel = _relevant(gold)
    return 1.0 if any(d in rel for d in (retrieved if k is None else retrieved[:k])) else 0.0


def recall_at_k(retrieved: Sequence[str], gold: Mapping[str, float], k: int | None) -> float:
    """|relevant ∩ top k| / |relevant| (ir-measures `R@k`)."""
    rel = _relevant(gold)
    if not rel:
        return 0.0
    return len(rel & set(retrieved if k is None else retrieved[:k])) / len(rel)


def r_cap_at_k(retrieved: Sequence[str], gold: Mapping[str, float], k: int | None) -> float:
    """|relevant ∩ top k| / min(k, |relevant|) (BEIR `R_cap@k`): a full top k scores 1."""
    if k is None:
        raise ValueError("r_cap needs a cutoff")
    rel = _relevant(gold)
    if not rel:
        return 0.0
    return len(rel & set(retrieved[:k])) / min(k, len(rel))


def precision_at_k(retrieved: Sequence[str], gold: Mapping[str, float], k: int | None) -> float:
    """Standard P@k: |relevant ∩ top k| / k, by k even if fewer were retrieved (`P@k`)."""
    if k is None:
        raise ValueError("precision needs a cutoff")
    rel = _relevant(gold)
    return len(rel & set(retrieved[:k])) / k


def mrr_at_k(retrieved: Sequence[str], gold: Mapping[str, float], k: int | None) -> float:
    """1 / rank of the first relevant id within the top k, else 0 (ir-measures `RR@k`)."""
    rel = _relevant(gold)
    for rank, d in enumerate(retrieved if k is None else retrieved[:k], start=1):
        if d in rel:
            return 1.0 / rank
    return 0.0


def map_at_k(retrieved: Sequence[str], gold: Mapping[str, float], k: int | None) -> float:
    """Average precision cut at k, divided by the total number of relevant ids (`AP@k`)."""
    rel = _relevant(gold)
    if not rel:
        return 0.0
    found = 0
    total = 0.0
    for rank, d in enumerate(_ranked(retrieved, k), start=1):
        if d is not None and d in rel:
            found += 1
            total += found / rank
    return total / len(rel)


def ndcg_at_k(retrieved: Sequence[str], gold: Mapping[str, float], k: int | None) -> float:
    """nDCG with linear gains and log2(rank + 1) discount, ideal cut at k (`nDCG@k`)."""
    gains = sorted((g for g in gold.values() if g > 0), reverse=True)
    if k is not None:
        gains = gains[:k]
    ideal = sum(g / math.log2(i + 1) for i, g in enumerate(gains, start=1))
    if ideal <= 0:
        return 0.0
    dcg = 0.0
    for rank, d in enumerate(_ranked(retrieved, k), start=1):
        if d is not None:
            g = gold.get(d, 0.0)
            if g > 0:
                dcg += g / math.log2(rank + 1)
    return dcg / ideal


register_metric("precise", precise_at_k, percent=True,
                summary="seed 004: share of queries with every gold label in the top k")
register_metric("hit", hit_at_k, percent=True,
                summary="share of queries with at least one gold label in the top k")
register_metric("recall", recall_at_k, percent=True,
                summary="share of a query's gold labels found in the top k")
register_metric("r_cap", r_cap_at_k, percent=True,
                summary="capped recall (BEIR R_cap@k): gold found in the top k / min(k, |gold|)")
register_metric("precision", precision_at_k, percent=True,
                summary="standard P@k: share of the top k that is relevant (not precise@k)")
register_metric("mrr", mrr_at_k, cutoff_optional=True,
                summary="1/rank of the first relevant result within k")
register_metric("map", map_at_k, cutoff_optional=True,
                summary="average precision cut at k, over all relevant (trec_eval AP@k)")
register_metric("ndcg", ndcg_at_k, cutoff_optional=True,
                summary="nDCG with graded linear gains (trec_eval nDCG@k)")


# --- specs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricSpec:
    """A metric name plus cutoff (`precise@5` → name "precise", k 5); k None = full list.

    Specs are the one vocabulary shared by the CLI, experiment files, tables and metrics.json;
    `str(spec)` is the canonical spelling and `parse_metric(str(spec)) == spec`.
    """

    name: str
    k: int | None = None

    def __post_init__(self) -> None:
        info = get_metric(self.name)
        if self.k is None:
            if not info.cutoff_optional:
                raise ConfigError(f"{self.name} needs a cutoff, e.g. {self.name}@5")
        elif isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ConfigError(f"cutoff of {self.name} must be a positive integer, got {self.k!r}")

    def __str__(self) -> str:
        return self.name if self.k is None else f"{self.name}@{self.k}"

    @property
    def info(self) -> MetricInfo:
        return get_metric(self.name)

    def score(self, retrieved: Sequence[str], gold: Mapping[str, float]) -> float:
        """Value for one query (callers decide what to do with queries without relevant gold)."""
        return self.info.fn(retrieved, gold, self.k)


_TOKEN = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9_]*)\s*(?:@\s*(?P<k>\S+))?$")


def parse_metric(text: str) -> MetricSpec:
    """One spec: `precise@5`, `map`, `nDCG@10` (names are case-insensitive)."""
    token = text.strip()
    m = _TOKEN.match(token)
    if not m:
        raise ConfigError(f"bad metric {text!r}: expected NAME or NAME@K, e.g. precise@5")
    name = m["name"].lower()
    if m["k"] is None:
        return MetricSpec(name)
    try:
        k = int(m["k"])
    except ValueError:
        raise ConfigError(f"bad cutoff in {text!r}: expected a positive integer") from None
    return MetricSpec(name, k)


def parse_metrics(text: str | Iterable[str | MetricSpec]) -> list[MetricSpec]:
    """Several specs, in order, without repeats.

    Syntax: items separated by `,` or `;`; an item is `NAME`, `NAME@K`, or a bare `K` that
    repeats the previous name, so `precise@1,2,5;recall@10,map` is precise@1, precise@2,
    precise@5, recall@10, map. A list is read the same way, item by item, so
    `["precise@1", "2", "ndcg@10"]` also works (that is what splitting a CLI value on commas
    gives).
    """
    items: list[str | MetricSpec] = [text] if isinstance(text, str) else list(text)
    specs: list[MetricSpec] = []
    prev: str | None = None
    for item in items:
        if isinstance(item, MetricSpec):
            specs.append(item)
            prev = item.name
            continue
        if not isinstance(item, str):
            raise ConfigError(f"metrics must be strings like 'precise@5', got {item!r}")
        for raw in re.split(r"[,;]", item):
            token = raw.strip()
            if not token:
                continue
            if token.isdigit():
                if prev is None:
                    raise ConfigError(f"bad metrics {item!r}: cutoff {token} has no metric name "
                                      "before it (write e.g. precise@1,2,5)")
                specs.append(MetricSpec(prev, int(token)))
                continue
            spec = parse_metric(token)
            specs.append(spec)
            prev = spec.name
    if not specs:
        raise ConfigError("no metrics given, e.g. precise@1,2,5")
    return list(dict.fromkeys(specs))


# --- evaluating a run ------------------------------------------------------------------------


def _json_float(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


def _per_query_path(path: Path) -> Path:
    return path.with_name(path.stem + ".per_query.jsonl")


TIE_RULE = ("tied scores keep the engine's order (trec_eval/ir-measures re-sort ties by doc "
            "id, so their values can differ on tied queries)")


def tied_positions(scores: Sequence[float], k: int | None) -> int:
    """Ranks within the top k (None: all) whose score another rank of the same list shares.

    The whole list counts as the other side, so a tie straddling the cutoff (which decides
    what gets into the top k) is counted too.
    """
    counts = Counter(scores)
    return sum(1 for s in (scores if k is None else scores[:k]) if counts[s] > 1)


@dataclass(frozen=True)
class TieCount:
    """How many ranks of a run tie, within the largest evaluated cutoff (see the conventions):
    the numbers to read beside a metric that ir-measures would compute differently."""

    cutoff: int | None
    """The ranks looked at: the largest cutoff of the specs; None = the whole list."""
    queries: int
    """Evaluated queries with at least one tied rank within the cutoff."""
    positions: int
    """Tied ranks within the cutoff, summed over the evaluated queries."""

    def to_json(self) -> dict[str, Any]:
        return {"cutoff": self.cutoff, "queries_with_ties": self.queries,
                "tied_positions": self.positions, "rule": TIE_RULE}

    @classmethod
    def from_json(cls, obj: Any) -> TieCount | None:
        """None for a metrics.json written before ties were counted."""
        if obj is None:
            return None
        cutoff = obj.get("cutoff")
        return cls(cutoff=None if cutoff is None else int(cutoff),
                   queries=int(obj["queries_with_ties"]), positions=int(obj["tied_positions"]))


def _tie_cutoff(specs: Sequence[MetricSpec]) -> int | None:
    ks = [s.k for s in specs]
    return None if not ks or None in ks else max(k for k in ks if k is not None)


@dataclass
class RunMetrics:
    """Per-query values and means of some metrics over one run.

    `values[str(spec)]` is aligned with `qids` (the run's result order) and holds NaN for
    excluded queries (no relevant gold), so paired significance tests can line two models up by
    position. `means` average the evaluated queries only. A RunMetrics loaded from a
    metrics.json without its per-query file has means but empty `values`.
    """

    model: str
    query_set: str
    specs: list[MetricSpec]
    qids: list[str]
    values: dict[str, FloatArray]
    excluded: npt.NDArray[np.bool_]
    means: dict[str, float] = field(default_factory=dict)
    summary_only: tuple[int, list[str]] | None = None
    """(n_queries, excluded qids) when loaded without per-query values (qids are then empty)."""
    ties: TieCount | None = None
    """Tied ranks of the run (None: not counted, e.g. a metrics.json from before ties were)."""
    tied: npt.NDArray[np.int64] | None = None
    """Per query (aligned with `qids`; 0 for excluded queries): tied ranks within the cutoff."""

    def __post_init__(self) -> None:
        if not self.means:
            self.means = {str(s): _mean(self.values[str(s)], self.excluded) for s in self.specs}

    @property
    def n_queries(self) -> int:
        return self.summary_only[0] if self.summary_only else len(self.qids)

    @property
    def n_excluded(self) -> int:
        return len(self.excluded_qids)

    @property
    def n_evaluated(self) -> int:
        return self.n_queries - self.n_excluded

    @property
    def excluded_qids(self) -> list[str]:
        if self.summary_only:
            return list(self.summary_only[1])
        return [q for q, x in zip(self.qids, self.excluded, strict=True) if x]

    @property
    def has_per_query(self) -> bool:
        return self.summary_only is None and all(str(s) in self.values for s in self.specs)

    def mean(self, spec: MetricSpec | str) -> float:
        return self.means[str(spec)]

    def per_query(self, spec: MetricSpec | str) -> FloatArray:
        """Values aligned with `qids` (NaN = excluded); raises if only means were loaded."""
        try:
            return self.values[str(spec)]
        except KeyError:
            raise ConfigError(f"no per-query values of {spec} for {self.model} on "
                              f"{self.query_set or 'this query set'}") from None

    def to_json(self, per_query: bool = False) -> dict[str, Any]:
        """JSON-ready dict; NaN (nothing to average) becomes null."""
        obj: dict[str, Any] = {
            "model": self.model,
            "query_set": self.query_set,
            "metrics": {k: _json_float(v) for k, v in self.means.items()},
            "n_queries": self.n_queries,
            "n_evaluated": self.n_evaluated,
            "n_excluded": self.n_excluded,
            "excluded_qids": self.excluded_qids,
            "excluded_reason": "no gold document with gain > 0",
        }
        if self.ties is not None:
            obj["ties"] = self.ties.to_json()
        if per_query:
            obj["per_query"] = self.per_query_rows()
        return obj

    def per_query_rows(self) -> list[dict[str, Any]]:
        rows = []
        for i, qid in enumerate(self.qids):
            row: dict[str, Any] = {"qid": qid, "excluded": bool(self.excluded[i])}
            for s in self.specs:
                row[str(s)] = _json_float(float(self.per_query(s)[i]))
            if self.tied is not None:
                row["tied_positions"] = int(self.tied[i])
            rows.append(row)
        return rows

    def save(self, path: Path, per_query: bool = True) -> None:
        """Write `path` (e.g. run_dir/metrics.json) and, by default, the per-query values beside
        it as `<stem>.per_query.jsonl` (kept apart so metrics.json stays small and readable)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), ensure_ascii=False, indent=2) + "\n",
                        encoding="utf-8")
        pq = _per_query_path(path)
        if per_query and self.has_per_query:
            with pq.open("w", encoding="utf-8") as f:
                for row in self.per_query_rows():
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
        elif pq.exists():
            pq.unlink()  # a per-query file from an earlier save would no longer match

    @classmethod
    def load(cls, path: Path) -> RunMetrics:
        """Read what `save` wrote; per-query values too when the per-query file is there."""
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
            means = {str(k): math.nan if v is None else float(v)
                     for k, v in obj["metrics"].items()}
            specs = parse_metrics(list(means)) if means else []
            n = int(obj["n_queries"])
            excluded_qids = [str(q) for q in obj.get("excluded_qids", [])]
            ties = TieCount.from_json(obj.get("ties"))
        except OSError as e:
            raise DataError(path, f"cannot read: {e.strerror or e}") from e
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise DataError(path, f"not a metrics.json: {e}") from e
        except ConfigError as e:
            raise DataError(path, str(e)) from e
        pq = _per_query_path(path)
        qids: list[str] = []
        values: dict[str, FloatArray] = {}
        excluded: list[bool] = []
        tied: list[int] | None = [] if ties is not None else None
        if pq.exists():
            cols: dict[str, list[float]] = {str(s): [] for s in specs}
            with pq.open(encoding="utf-8") as f:
                for lineno, line in enumerate(f, start=1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                        qids.append(str(row["qid"]))
                        excluded.append(bool(row["excluded"]))
                        for name, col in cols.items():
                            v = row[name]
                            col.append(math.nan if v is None else float(v))
                        if tied is not None:
                            if "tied_positions" in row:
                                tied.append(int(row["tied_positions"]))
                            else:  # per-query file from before ties were counted
                                tied = None
                    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                        raise DataError(pq, f"bad per-query line: {e}", line=lineno) from e
            if len(qids) != n:
                raise DataError(pq, f"{len(qids)} rows but {path.name} says {n} queries")
            values = {name: np.asarray(col, dtype=np.float64) for name, col in cols.items()}
        return cls(model=str(obj.get("model", "")), query_set=str(obj.get("query_set", "")),
                   specs=specs, qids=qids, values=values,
                   excluded=np.asarray(excluded, dtype=bool), means=means,
                   summary_only=None if qids else (n, excluded_qids), ties=ties,
                   tied=np.asarray(tied, dtype=np.int64) if tied and qids else None)


def _mean(values: FloatArray, excluded: npt.NDArray[np.bool_]) -> float:
    kept = values[~excluded]
    return float(kept.mean()) if kept.size else math.nan


def evaluate(run: Run, specs: str | Iterable[str | MetricSpec]) -> RunMetrics:
    """Score every query of `run` on every spec.

    Queries whose gold has no id with gain > 0 are excluded (NaN, not 0) and counted, because
    scoring them 0 would punish every model for a data problem and scoring them 1 would reward it.
    Rankings are scored in the run's order, ties included; tied ranks are counted (`ties`).
    """
    parsed = parse_metrics(specs)
    n = len(run.results)
    excluded = np.zeros(n, dtype=bool)
    values: dict[str, FloatArray] = {str(s): np.full(n, math.nan, dtype=np.float64) for s in parsed}
    cutoff = _tie_cutoff(parsed)
    tied = np.zeros(n, dtype=np.int64)
    for i, r in enumerate(run.results):
        if not any(g > 0 for g in r.gold.values()):
            excluded[i] = True
            continue
        for s in parsed:
            values[str(s)][i] = s.score(r.retrieved, r.gold)
        tied[i] = tied_positions(r.scores[:len(r.retrieved)], cutoff)
    ties = TieCount(cutoff=cutoff, queries=int((tied > 0).sum()), positions=int(tied.sum()))
    return RunMetrics(model=run.model, query_set=run.query_set, specs=parsed,
                      qids=[r.qid for r in run.results], values=values, excluded=excluded,
                      ties=ties, tied=tied)
