"""Seed 002's MSMARCO metric set (Recall@1/10/100, MRR@1/10/100) and the three meanings its
script gave "Recall@k" in 2024, each under its own name: recall@k (share of the relevant
found), hit@k (any found) and r_cap@k (capped recall, BEIR's R_cap@k), against ir-measures
where it has the measure and against BEIR's / FlagEmbedding's formulas where it has none."""

from __future__ import annotations

import random

import numpy as np
import pytest

from embedarena.evaluation.metrics import evaluate, parse_metric
from embedarena.evaluation.run import QueryResult, Run

ir_measures = pytest.importorskip("ir_measures")
from ir_measures import RR, NumRel, P, R, Success  # noqa: E402

CUTOFFS = (1, 10, 100)


def _msmarco_like(seed: int, n: int = 300) -> list[QueryResult]:
    """Queries with 1-150 relevant passages (many with one, like MSMARCO dev; some with more
    than 10 and a few with more than 100, so every cutoff caps somewhere), ranked 100-150
    deep from a pool of 400."""
    rng = random.Random(seed)
    pool = [f"p{i}" for i in range(400)]
    out = []
    for q in range(n):
        n_rel = rng.choice([1, 1, 1, 2, 3, 5, 12, 40, 150])
        rel = rng.sample(pool, n_rel)
        gold = {d: float(rng.choice([1, 2])) for d in rel}
        gold.update({d: 0.0 for d in rng.sample(pool, 5) if d not in gold})  # judged 0
        ranked = rng.sample(pool, rng.randint(100, 150))
        scores = [float(len(ranked) - i) for i in range(len(ranked))]
        out.append(QueryResult(f"q{q}", f"query {q}", gold, ranked, scores))
    return out


def _ir(measure: object, results: list[QueryResult]) -> dict[str, float]:
    qrels = {r.qid: {d: int(g) for d, g in r.gold.items()} for r in results}
    run = {r.qid: dict(zip(r.retrieved, r.scores, strict=True)) for r in results}
    return {m.query_id: m.value for m in ir_measures.iter_calc([measure], qrels, run)}


@pytest.mark.parametrize("seed", [0, 1])
def test_recall_mrr_hit_at_1_10_100_match_ir_measures(seed: int) -> None:
    results = _msmarco_like(seed)
    names = [f"{m}@{k}" for m in ("recall", "mrr", "hit") for k in CUTOFFS]
    ours = evaluate(Run("m", "dev", results), names)
    for k in CUTOFFS:
        for name, measure in ((f"recall@{k}", R @ k), (f"mrr@{k}", RR @ k),
                              (f"hit@{k}", Success @ k)):
            ref = _ir(measure, results)
            got = ours.per_query(name)
            assert [round(float(x), 9) for x in got] == [round(ref[r.qid], 9) for r in results]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_r_cap_from_ir_measures_p_and_numrel(seed: int) -> None:
    """ir-measures has no capped recall; it is its P@k·k (relevant found in the top k)
    divided by min(k, NumRel)."""
    results = _msmarco_like(seed)
    ours = evaluate(Run("m", "dev", results), [f"r_cap@{k}" for k in CUTOFFS])
    numrel = _ir(NumRel, results)
    for k in CUTOFFS:
        p = _ir(P @ k, results)
        for i, r in enumerate(results):
            want = p[r.qid] * k / min(k, numrel[r.qid])
            assert ours.per_query(f"r_cap@{k}")[i] == pytest.approx(want, abs=1e-9)


def _beir_r_cap(results: list[QueryResult], k: int) -> float:
    """BEIR's `recall_cap` (beir/retrieval/custom_metrics.py), restated: per query, relevant
    (grade > 0) in the top k over min(|relevant|, k), averaged over queries."""
    total = 0.0
    for r in results:
        relevant = [d for d, g in r.gold.items() if g > 0]
        found = [d for d in r.retrieved[:k] if r.gold.get(d, 0) > 0]
        total += len(found) / min(len(relevant), k)
    return total / len(results)


def _flagembedding_recalls(results: list[QueryResult], k: int) -> dict[str, float]:
    """The three bodies of eval_msmarco.py's "Recall@k" loop (`recall` = gold ∩ top k):
    len/len(label) (2023), len/max(min(len(recall), len(label)), 1) (a 2024 rewrite: 1 as
    soon as one is found) and len/max(min(cutoff, len(label)), 1) (the capped form)."""
    out = {"share": 0.0, "hit": 0.0, "capped": 0.0}
    for r in results:
        label = [d for d, g in r.gold.items() if g > 0]
        found = len(set(label) & set(r.retrieved[:k]))
        out["share"] += found / len(label)
        out["hit"] += found / max(min(found, len(label)), 1)
        out["capped"] += found / max(min(k, len(label)), 1)
    return {name: v / len(results) for name, v in out.items()}


def test_each_flagembedding_variant_is_one_named_metric() -> None:
    results = _msmarco_like(5)
    ours = evaluate(Run("m", "dev", results),
                    [f"{m}@{k}" for m in ("recall", "hit", "r_cap") for k in CUTOFFS])
    for k in CUTOFFS:
        fe = _flagembedding_recalls(results, k)
        assert ours.mean(f"recall@{k}") == pytest.approx(fe["share"], abs=1e-12)
        assert ours.mean(f"hit@{k}") == pytest.approx(fe["hit"], abs=1e-12)
        assert ours.mean(f"r_cap@{k}") == pytest.approx(fe["capped"], abs=1e-12)
        assert ours.mean(f"r_cap@{k}") == pytest.approx(_beir_r_cap(results, k), abs=1e-12)
    # at k = 1 the later two coincide with hit@1 = mrr@1; only the first can fall below it
    assert ours.mean("r_cap@1") == ours.mean("hit@1")
    assert ours.mean("recall@1") < ours.mean("hit@1")


def test_r_cap_by_hand() -> None:
    gold = {"a": 1.0, "b": 2.0, "c": 1.0, "z": 0.0}
    ranked = ["a", "x", "b", "z", "a", "y", "c"]
    spec = {k: parse_metric(f"r_cap@{k}") for k in (1, 2, 3, 5, 7)}
    # top 1: a → 1/min(1,3); top 2: a → 1/2; top 3: a, b → 2/3; top 5: a, b (z judged 0,
    # the repeated a counts once) → 2/3; top 7: all three → 1
    assert [spec[k].score(ranked, gold) for k in (1, 2, 3, 5, 7)] == pytest.approx(
        [1.0, 0.5, 2 / 3, 2 / 3, 1.0])
    assert parse_metric("R_cap@10") == parse_metric("r_cap@10")
    assert parse_metric("r_cap@5").info.percent
    with pytest.raises(Exception, match="needs a cutoff"):
        parse_metric("r_cap")
    # no relevant gold: excluded like every metric, never scored
    run = Run("m", "s", [QueryResult("1", "q", {"a": 0.0}, ["a"], [1.0]),
                         QueryResult("2", "q", {"a": 1.0}, ["a"], [1.0])])
    m = evaluate(run, "r_cap@10")
    assert m.n_excluded == 1 and m.mean("r_cap@10") == 1.0
    assert np.isnan(m.per_query("r_cap@10")[0])
