"""Hybrid rows: fuse the ranked lists of member models per query (pure functions over runs).

Two fusions, both client-side so they work on any cluster and across our one-index-per-model
layout (ES's `rrf` retriever can only fuse retrievers over the same index):

- **rrf**: `score(d) = Σ_i w_i / (k + rank_i(d))`, rank 1-based, a member that did not return
  `d` contributes nothing (Cormack et al. 2009; the same formula as ES `rank_constant`).
- **weighted**: `score(d) = Σ_i w_i · norm_i(d)` with each member's scores for the query
  normalised first, because BM25 scores are unbounded and cosine scores live in [-1, 1]:
  `minmax` maps the member's list to [0, 1] (a constant list maps to 1); `zscore` to
  (s - mean) / std (a constant list maps to 0). A document a member did not return gets that
  member's *floor*: 0 under minmax, the lowest z in its list under zscore ("below everything
  it returned").

**Ties** (equal fused scores) are broken by the best rank the document had in any member, then
by the earlier member (the order of `hybrid: [...]`), then by doc id, so a fused list is the same
on every run and every machine.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from embedarena.errors import ConfigError
from embedarena.evaluation.run import QueryResult, Run

FusionMethod = Literal["rrf", "weighted"]
Normalization = Literal["minmax", "zscore"]
Ranked = Sequence[tuple[str, float]]
"""One member's result for one query: (doc id, score), best first."""


@dataclass(frozen=True)
class FusionParams:
    """How to fuse: method, RRF constant, per-member weights (None: equal), normalisation."""

    method: FusionMethod = "rrf"
    k: int = 60
    weights: tuple[float, ...] | None = None
    normalize: Normalization = "minmax"

    def __post_init__(self) -> None:
        if self.method not in ("rrf", "weighted"):
            raise ConfigError(f"fusion is 'rrf' or 'weighted', not {self.method!r}")
        if self.normalize not in ("minmax", "zscore"):
            raise ConfigError(f"normalize is 'minmax' or 'zscore', not {self.normalize!r}")
        if self.k < 0:
            raise ConfigError(f"the RRF constant k must be >= 0, got {self.k}")
        if self.weights is not None:
            if any(not math.isfinite(w) or w < 0 for w in self.weights):
                raise ConfigError(f"fusion weights must be finite and >= 0, got "
                                  f"{list(self.weights)}")
            if not any(w > 0 for w in self.weights):
                raise ConfigError("at least one fusion weight must be > 0")

    def weights_for(self, n: int) -> tuple[float, ...]:
        if self.weights is None:
            return (1.0,) * n if self.method == "rrf" else (1.0 / n,) * n
        if len(self.weights) != n:
            raise ConfigError(f"{len(self.weights)} fusion weights for {n} members")
        return self.weights

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"fusion": self.method}
        if self.method == "rrf":
            out["k"] = self.k
        else:
            out["normalize"] = self.normalize
        if self.weights is not None:
            out["weights"] = [round(w, 6) for w in self.weights]
        return out

    def describe(self) -> str:
        w = "" if self.weights is None else " w=" + "/".join(f"{x:g}" for x in self.weights)
        if self.method == "rrf":
            return f"rrf k={self.k}{w}"
        return f"weighted {self.normalize}{w}"


def _dedup(ranked: Ranked) -> list[tuple[str, float]]:
    """First occurrence of each doc id only (a repeated id earns nothing twice)."""
    seen: set[str] = set()
    out = []
    for doc, score in ranked:
        if doc not in seen:
            seen.add(doc)
            out.append((doc, float(score)))
    return out


def normalize_scores(scores: Sequence[float], how: Normalization) -> list[float]:
    """Min-max to [0, 1] or z-scores; a constant list maps to 1 (minmax) or 0 (zscore)."""
    if not scores:
        return []
    if how == "minmax":
        lo, hi = min(scores), max(scores)
        if hi == lo:
            return [1.0] * len(scores)
        return [(s - lo) / (hi - lo) for s in scores]
    if how == "zscore":
        mean = sum(scores) / len(scores)
        std = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
        if std == 0:
            return [0.0] * len(scores)
        return [(s - mean) / std for s in scores]
    raise ConfigError(f"normalize is 'minmax' or 'zscore', not {how!r}")


def _order(fused: dict[str, float], lists: list[list[tuple[str, float]]]
           ) -> list[tuple[str, float]]:
    best: dict[str, tuple[int, int]] = {}
    for m, lst in enumerate(lists):
        for rank, (doc, _) in enumerate(lst, start=1):
            cur = best.get(doc)
            if cur is None or (rank, m) < cur:
                best[doc] = (rank, m)
    return sorted(fused.items(), key=lambda kv: (-kv[1], *best[kv[0]], kv[0]))


def rrf(lists: Sequence[Ranked], k: int = 60,
        weights: Sequence[float] | None = None) -> list[tuple[str, float]]:
    """Reciprocal rank fusion of member lists (best first); see the module doc for ties."""
    clean = [_dedup(lst) for lst in lists]
    ws = list(weights) if weights is not None else [1.0] * len(clean)
    if len(ws) != len(clean):
        raise ConfigError(f"{len(ws)} weights for {len(clean)} lists")
    fused: dict[str, float] = {}
    for w, lst in zip(ws, clean):
        for rank, (doc, _) in enumerate(lst, start=1):
            fused[doc] = fused.get(doc, 0.0) + w / (k + rank)
    return _order(fused, clean)


def weighted(lists: Sequence[Ranked], weights: Sequence[float] | None = None,
             normalize: Normalization = "minmax") -> list[tuple[str, float]]:
    """Weighted sum of per-member normalised scores (missing documents get the floor)."""
    clean = [_dedup(lst) for lst in lists]
    ws = list(weights) if weights is not None else [1.0 / max(1, len(clean))] * len(clean)
    if len(ws) != len(clean):
        raise ConfigError(f"{len(ws)} weights for {len(clean)} lists")
    normed: list[dict[str, float]] = []
    floors: list[float] = []
    for lst in clean:
        vals = normalize_scores([s for _, s in lst], normalize)
        normed.append(dict(zip((d for d, _ in lst), vals)))
        floors.append(0.0 if normalize == "minmax" or not vals else min(vals))
    docs = dict.fromkeys(d for lst in clean for d, _ in lst)
    fused = {d: sum(w * n.get(d, fl) for w, n, fl in zip(ws, normed, floors)) for d in docs}
    return _order(fused, clean)


def fuse(lists: Sequence[Ranked], params: FusionParams) -> list[tuple[str, float]]:
    ws = params.weights_for(len(lists))
    if params.method == "rrf":
        return rrf(lists, params.k, ws)
    return weighted(lists, ws, params.normalize)


# -- runs ------------------------------------------------------------------------------------
def _aligned(runs: Sequence[Run]) -> list[tuple[QueryResult, ...]]:
    """Member results per query, matched by qid; members must cover the same queries."""
    if len(runs) < 2:
        raise ConfigError("a hybrid needs at least two member runs")
    by_qid = [{r.qid: r for r in run.results} for run in runs]
    first = runs[0]
    for run, idx in zip(runs[1:], by_qid[1:]):
        if set(idx) != set(by_qid[0]):
            missing = sorted(set(by_qid[0]) ^ set(idx))[:3]
            raise ConfigError(f"member runs '{first.model}' and '{run.model}' cover different "
                              f"queries (e.g. qid {missing}); fuse runs of the same query set")
    return [tuple(idx[r.qid] for idx in by_qid) for r in first.results]


def fuse_runs(runs: Sequence[Run], params: FusionParams, depth: int, model: str,
              meta: dict[str, Any] | None = None) -> Run:
    """A `Run` whose per-query list is the fusion of the members' lists, cut at `depth`."""
    results = []
    for members in _aligned(runs):
        fused = fuse([list(zip(m.retrieved, m.scores)) for m in members], params)[:depth]
        texts: dict[str, str] = {}
        for m in members:
            if m.texts is not None:
                texts.update(zip(m.retrieved, m.texts))
        ids = [d for d, _ in fused]
        head = members[0]
        results.append(QueryResult(
            qid=head.qid, query=head.query, gold=dict(head.gold), retrieved=ids,
            scores=[s for _, s in fused],
            texts=[texts.get(d, d) for d in ids] if texts else None))
    return Run(model=model, query_set=runs[0].query_set, results=results, meta={
        "search": "hybrid", "members": [r.model for r in runs], "k": depth,
        "fusion": params.method, "fusion_params": params.to_dict(), **(meta or {})})


def subset_run(run: Run, qids: Iterable[str]) -> Run:
    """The same run restricted to `qids` (order of the run kept)."""
    keep = set(qids)
    return Run(model=run.model, query_set=run.query_set,
               results=[r for r in run.results if r.qid in keep], meta=dict(run.meta))


# -- tuning ----------------------------------------------------------------------------------
@dataclass
class TuneResult:
    """The best parameters on the dev queries, the objective of every candidate, and exactly
    which queries the tuner saw (so a caller can prove the test queries were not among them)."""

    best: FusionParams
    best_score: float
    objective: str
    scores: list[tuple[FusionParams, float]]
    seen_qids: frozenset[str] = field(default_factory=frozenset)


def weight_grid(n: int, step: float = 0.1) -> list[tuple[float, ...]]:
    """Every weight vector on the simplex with the given step (all members > 0 or not)."""
    if n < 1 or not 0 < step <= 1:
        raise ConfigError(f"weight grid needs n >= 1 and 0 < step <= 1, got {n}, {step}")
    units = round(1 / step)
    out = []
    for combo in itertools.product(range(units + 1), repeat=n):
        if sum(combo) == units:
            out.append(tuple(round(c * step, 10) for c in combo))
    return out


def param_grid(n_members: int, methods: Sequence[FusionMethod] = ("rrf", "weighted"),
               step: float = 0.1, ks: Sequence[int] = (1, 5, 10, 20, 40, 60, 100),
               normalizations: Sequence[Normalization] = ("minmax", "zscore"),
               ) -> list[FusionParams]:
    grid: list[FusionParams] = []
    weights = [w for w in weight_grid(n_members, step) if any(x > 0 for x in w)]
    for method in methods:
        if method == "rrf":
            grid += [FusionParams("rrf", k, w) for k in ks for w in weights]
        else:
            grid += [FusionParams("weighted", 60, w, nz) for nz in normalizations
                     for w in weights]
    return grid


def tune(dev_runs: Sequence[Run], objective: str, grid: Sequence[FusionParams],
         depth: int, progress: Callable[[int], None] | None = None) -> TuneResult:
    """Pick the params with the best mean `objective` on `dev_runs` (and only those).

    Ties keep the earlier candidate in `grid`, so the choice is deterministic.
    """
    from embedarena.evaluation.metrics import evaluate, parse_metric

    spec = parse_metric(objective)
    if not grid:
        raise ConfigError("the fusion grid is empty")
    scored: list[tuple[FusionParams, float]] = []
    best: tuple[FusionParams, float] | None = None
    for params in grid:
        fused = fuse_runs(dev_runs, params, depth, "tune")
        value = evaluate(fused, [spec]).means[str(spec)]
        value = -math.inf if math.isnan(value) else value
        scored.append((params, value))
        if best is None or value > best[1]:
            best = (params, value)
        if progress is not None:
            progress(1)
    assert best is not None
    seen = frozenset(r.qid for run in dev_runs for r in run.results)
    return TuneResult(best[0], best[1], str(spec), scored, seen)


@dataclass
class TuneReport:
    """Tuned on dev, measured on test: the member and fused metrics on both halves."""

    tune: TuneResult
    dev_qids: list[str]
    test_qids: list[str]
    rows: list[dict[str, Any]]
    """One row per (split, system): {"split", "system", "params", metric: value, ...}."""
    versus: dict[str, Any] = field(default_factory=dict)
    """Test split: tuned fusion vs the best member on the objective (mean difference and the
    paired randomization p-value), so "hybrid beats its members" is a tested claim."""


def check_disjoint(dev: Sequence[QueryResult], test: Sequence[QueryResult]) -> None:
    """Refuse a split where a test query (by id or by text) is also a dev query."""
    dq, tq = {r.qid for r in dev}, {r.qid for r in test}
    both = dq & tq
    if both:
        raise ConfigError(f"{len(both)} queries are in both the dev and the test set "
                          f"(e.g. qid {sorted(both)[0]}); tuning on them would leak")
    dt, tt = {r.query.strip() for r in dev}, {r.query.strip() for r in test}
    same = dt & tt
    if same:
        raise ConfigError(f"{len(same)} query texts are in both the dev and the test set "
                          f"(e.g. {sorted(same)[0]!r}); tuning on them would leak")


def tune_then_test(member_runs: Sequence[Run], dev_qids: Iterable[str],
                   test_qids: Iterable[str], objective: str, grid: Sequence[FusionParams],
                   depth: int, metrics: Sequence[str], baseline: FusionParams | None = None,
                   progress: Callable[[int], None] | None = None) -> TuneReport:
    """Tune on the dev queries only, then score members, baseline and tuned fusion on both.

    The tuner is handed runs cut down to the dev qids: test results never reach it.
    """
    from embedarena.evaluation.metrics import evaluate

    dev_set, test_set = list(dict.fromkeys(dev_qids)), list(dict.fromkeys(test_qids))
    dev_runs = [subset_run(r, dev_set) for r in member_runs]
    test_runs = [subset_run(r, test_set) for r in member_runs]
    check_disjoint(dev_runs[0].results, test_runs[0].results)
    if not dev_runs[0].results or not test_runs[0].results:
        raise ConfigError("both the dev and the test set need at least one query")
    result = tune(dev_runs, objective, grid, depth, progress)
    wanted = list(dict.fromkeys([objective, *metrics]))
    rows: list[dict[str, Any]] = []
    per_query: dict[tuple[str, str], Any] = {}
    for split, runs in (("dev", dev_runs), ("test", test_runs)):
        systems: list[tuple[str, str, Run]] = [
            (r.model, "", Run(r.model, r.query_set,
                              [QueryResult(q.qid, q.query, q.gold, q.retrieved[:depth],
                                           q.scores[:depth], q.texts[:depth] if q.texts
                                           else None) for q in r.results], r.meta))
            for r in runs]
        if baseline is not None:
            systems.append(("fused (given)", baseline.describe(),
                            fuse_runs(runs, baseline, depth, "given")))
        systems.append(("fused (tuned)", result.best.describe(),
                        fuse_runs(runs, result.best, depth, "tuned")))
        for name, desc, run in systems:
            scored = evaluate(run, wanted)
            per_query[(split, name)] = scored.per_query(objective)
            rows.append({"split": split, "system": name, "params": desc,
                         "n": len(run.results), **scored.means})
    return TuneReport(result, dev_set, test_set, rows,
                      _versus_best_member(rows, per_query, objective,
                                          [r.model for r in member_runs]))


def _versus_best_member(rows: list[dict[str, Any]], per_query: dict[tuple[str, str], Any],
                        objective: str, members: list[str]) -> dict[str, Any]:
    import numpy as np

    from embedarena.evaluation.significance import randomization_test

    test_rows = {r["system"]: r for r in rows if r["split"] == "test"}
    vals: dict[str, float] = {}
    for m in members:
        v = test_rows.get(m, {}).get(objective)
        vals[m] = -math.inf if v is None or math.isnan(float(v)) else float(v)
    best = max(vals, key=lambda m: vals[m])
    a, b = per_query[("test", best)], per_query[("test", "fused (tuned)")]
    keep = ~(np.isnan(a) | np.isnan(b))
    p, exact = randomization_test(a[keep], b[keep])
    return {"metric": objective, "best_member": best,
            "best_member_value": float(np.mean(a[keep])) if keep.any() else None,
            "tuned_value": float(np.mean(b[keep])) if keep.any() else None,
            "difference": float(np.mean(b[keep] - a[keep])) if keep.any() else None,
            "p_value": p, "exact": exact}
