"""Metrics against ir-measures (pytrec_eval backend, i.e. trec_eval) on random graded runs, and
precise@k against an independent reference written from seed 004's definition."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from embedarena.evaluation.metrics import evaluate
from embedarena.evaluation.run import QueryResult, Run

ir_measures = pytest.importorskip("ir_measures")
from ir_measures import AP, RR, P, R, Success, nDCG  # noqa: E402


def qr(qid: str, gold: dict[str, float], retrieved: list[str]) -> QueryResult:
    scores = [float(len(retrieved) - i) for i in range(len(retrieved))]
    return QueryResult(qid=qid, query=f"q {qid}", gold=gold, retrieved=retrieved, scores=scores)


N_RUNS = 200


def _random_runs(seed: int) -> list[tuple[list[QueryResult], list[int]]]:
    """Random graded qrels (0-3, zero grades included, at least one relevant per query),
    rankings of random depth (sometimes shorter than the cutoffs) and random cutoffs."""
    rng = random.Random(seed)
    runs = []
    for _ in range(N_RUNS):
        pool = [f"d{i}" for i in range(rng.randint(5, 40))]
        results = []
        for q in range(rng.randint(1, 8)):
            judged = rng.sample(pool, rng.randint(1, min(12, len(pool))))
            gold = {d: float(rng.choice([0, 1, 1, 2, 3])) for d in judged}
            if not any(g > 0 for g in gold.values()):
                gold[judged[0]] = float(rng.randint(1, 3))
            retrieved = rng.sample(pool, rng.randint(1, len(pool)))
            results.append(qr(f"q{q}", gold, retrieved))
        ks = sorted(rng.sample(range(1, 45), 3))
        runs.append((results, ks))
    return runs


def _trec(results: list[QueryResult], depth: int | None = None) -> tuple[dict, dict]:
    qrels = {r.qid: {d: int(g) for d, g in r.gold.items()} for r in results}
    run = {r.qid: {d: float(len(r.retrieved) - i) for i, d in enumerate(r.retrieved[:depth])}
           for r in results}
    return qrels, run


def _per_query(measure: object, qrels: dict, run: dict) -> dict[str, float]:
    ev = ir_measures.pytrec_eval.evaluator([measure], qrels)
    return {m.query_id: m.value for m in ev.iter_calc(run)}


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_pytrec_eval_on_random_runs(seed: int) -> None:
    checked = 0
    for results, ks in _random_runs(seed):
        qrels, trec_run = _trec(results)
        pairs: list[tuple[str, object]] = [("map", AP), ("ndcg", nDCG), ("mrr", RR)]
        for k in ks:
            pairs += [(f"hit@{k}", Success @ k), (f"recall@{k}", R @ k),
                      (f"precision@{k}", P @ k), (f"map@{k}", AP @ k),
                      (f"ndcg@{k}", nDCG @ k)]
        ours = evaluate(Run("m", "s", results), [name for name, _ in pairs]
                        + [f"mrr@{k}" for k in ks])
        for name, measure in pairs:
            ref = _per_query(measure, qrels, trec_run)
            got = ours.per_query(name)
            for i, r in enumerate(results):
                assert got[i] == pytest.approx(ref[r.qid], abs=1e-6), (name, r)
            assert ours.mean(name) == pytest.approx(np.mean([ref[r.qid] for r in results]),
                                                    abs=1e-6)
            checked += 1
        # pytrec_eval has no RR cutoff (ir-measures' pytrec_eval evaluator returns 0 for RR@k):
        # reciprocal rank over the ranking truncated at k is the same quantity
        for k in ks:
            ref = _per_query(RR, qrels, _trec(results, depth=k)[1])
            got = ours.per_query(f"mrr@{k}")
            for i, r in enumerate(results):
                assert got[i] == pytest.approx(ref[r.qid], abs=1e-6), (k, r)
    assert checked > N_RUNS * 10


def test_mrr_at_k_matches_ir_measures_default_provider() -> None:
    for results, ks in _random_runs(7)[:40]:
        qrels, trec_run = _trec(results)
        ours = evaluate(Run("m", "s", results), [f"mrr@{k}" for k in ks])
        for k in ks:
            ref = {m.query_id: m.value for m in ir_measures.iter_calc([RR @ k], qrels, trec_run)}
            for i, r in enumerate(results):
                assert ours.per_query(f"mrr@{k}")[i] == pytest.approx(ref[r.qid], abs=1e-6)


def _precise_reference(retrieved: list[str], gold: dict[str, float], k: int) -> float:
    """Written from the definition by ranks: the worst-ranked relevant id must be at rank <= k."""
    first_rank: dict[str, int] = {}
    for rank, d in enumerate(retrieved, start=1):
        first_rank.setdefault(d, rank)
    worst = max(first_rank.get(d, math.inf) for d, g in gold.items() if g > 0)
    return 1.0 if worst <= k else 0.0


def test_precise_matches_reference_on_random_runs() -> None:
    seen = {0.0: 0, 1.0: 0}
    for results, ks in _random_runs(3):
        ours = evaluate(Run("m", "s", results), [f"precise@{k}" for k in ks]
                        + [f"hit@{k}" for k in ks] + [f"recall@{k}" for k in ks])
        for k in ks:
            for i, r in enumerate(results):
                want = _precise_reference(r.retrieved, r.gold, k)
                got = ours.per_query(f"precise@{k}")[i]
                assert got == want, (k, r)
                seen[got] += 1
                # precise@k is exactly "recall@k is complete", and never beats hit@k
                assert got == float(ours.per_query(f"recall@{k}")[i] == 1.0)
                assert got <= ours.per_query(f"hit@{k}")[i]
    assert seen[0.0] > 100 and seen[1.0] > 100  # both outcomes really exercised


def test_duplicates_equal_a_fresh_nonrelevant_id_on_random_runs() -> None:
    rng = random.Random(11)
    names = "precise@3,hit@3,recall@3,precision@3,mrr@3,map@3,ndcg@3,map,ndcg,mrr,precise@10"
    for results, _ in _random_runs(5)[:60]:
        with_dup, replaced = [], []
        for r in results:
            ranked = list(r.retrieved)
            pos = rng.randint(1, len(ranked))  # repeat ranked[j], j < pos, at rank pos + 1
            ranked.insert(pos, ranked[rng.randint(0, pos - 1)])
            other = ranked[:pos] + [f"fresh-{r.qid}"] + ranked[pos + 1:]
            with_dup.append(qr(r.qid, r.gold, ranked))
            replaced.append(qr(r.qid, r.gold, other))
        a = evaluate(Run("m", "s", with_dup), names)
        b = evaluate(Run("m", "s", replaced), names)
        for spec in a.specs:
            np.testing.assert_allclose(a.per_query(spec), b.per_query(spec), atol=1e-12)


def _tied_runs(seed: int) -> list[tuple[list[QueryResult], list[int]]]:
    """Runs as an engine returns them when scores tie: scores from a few distinct values,
    sorted, and within a tie whatever order the engine chose (here: random, not by id)."""
    rng = random.Random(seed)
    runs = []
    for results, ks in _random_runs(seed)[:80]:
        tied = []
        for r in results:
            scores = sorted((float(rng.randint(1, 4)) for _ in r.retrieved), reverse=True)
            tied.append(QueryResult(qid=r.qid, query=r.query, gold=r.gold,
                                    retrieved=list(r.retrieved), scores=scores))
        runs.append((tied, ks))
    return runs


def _cut_measures(ks: list[int]) -> list[tuple[str, object]]:
    pairs: list[tuple[str, object]] = []
    for k in ks:
        pairs += [(f"hit@{k}", Success @ k), (f"recall@{k}", R @ k), (f"precision@{k}", P @ k),
                  (f"map@{k}", AP @ k), (f"ndcg@{k}", nDCG @ k)]
    return pairs


def test_ties_engine_order_matches_ir_measures_given_that_order() -> None:
    """With tied scores replaced by strictly decreasing values in the engine's order (what
    `_trec` hands over), ir-measures agrees exactly: we score the order the user got."""
    for results, ks in _tied_runs(21):
        qrels, trec_run = _trec(results)
        pairs = _cut_measures(ks)
        ours = evaluate(Run("m", "s", results), [name for name, _ in pairs])
        for name, measure in pairs:
            ref = _per_query(measure, qrels, trec_run)
            for i, r in enumerate(results):
                assert ours.per_query(name)[i] == pytest.approx(ref[r.qid], abs=1e-6), (name, r)


def test_ties_raw_scores_make_ir_measures_differ_only_on_tied_queries() -> None:
    """Given the raw tied scores, trec_eval re-sorts each tie by doc id, so its values differ
    from ours on some queries, and only on queries where `tied` counts a tie within the
    cutoff; the untied queries agree exactly."""
    differ = agree_tied = 0
    for results, ks in _tied_runs(22):
        qrels = {r.qid: {d: int(g) for d, g in r.gold.items()} for r in results}
        raw = {r.qid: dict(zip(r.retrieved, r.scores, strict=True)) for r in results}
        pairs = _cut_measures(ks)
        ours = evaluate(Run("m", "s", results), [name for name, _ in pairs])
        assert ours.tied is not None and ours.ties is not None and ours.ties.cutoff == ks[-1]
        for name, measure in pairs:
            ref = _per_query(measure, qrels, raw)
            for i, r in enumerate(results):
                same = ours.per_query(name)[i] == pytest.approx(ref[r.qid], abs=1e-6)
                if ours.tied[i] == 0:
                    assert same, (name, r)
                elif same:
                    agree_tied += 1
                else:
                    differ += 1
    assert differ > 50 and agree_tied > 0  # ties often, not always, change a value
