"""Calibration on constructed scores: the known threshold is found, target precision is met,
and the test-side numbers are what the definitions say."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embedarena.errors import ConfigError
from embedarena.evaluation.calibrate import (
    abstention_stats,
    calibrate,
    find_threshold,
    no_match_mask,
    sigmoid,
    top_scores,
)
from embedarena.evaluation.run import QueryResult, Run


def _world(seed: int, n: int = 200, lo: float = 0.4, hi: float = 0.6,
           prefix: str = "q") -> Run:
    """No-match queries score in [0, lo), matchable ones in [hi, 1]: any t in (lo, hi] is
    perfect. Matchable queries have their gold at rank 1 on even ids, rank 2 on odd ids."""
    rng = np.random.default_rng(seed)
    results = []
    for i in range(n):
        nm = i % 4 == 0
        top = rng.uniform(0, lo) if nm else rng.uniform(hi, 1)
        gold = {} if nm else {f"g{i}": 1.0}
        ranked = [f"g{i}", "x"] if i % 2 == 0 else ["x", f"g{i}"]
        results.append(QueryResult(f"{prefix}{i}", f"{prefix} text {i}", gold, ranked,
                                   [float(top), float(top) - 0.01]))
    return Run("m", "qs", results)


def test_max_f1_finds_the_known_gap() -> None:
    run = _world(0)
    scores, nm = top_scores(run), no_match_mask(run)
    best = find_threshold(scores, nm)
    assert max(scores[nm]) < 0.4 and min(scores[~nm]) >= 0.6
    assert max(scores[nm]) < best.threshold <= min(scores[~nm])
    assert best.f1 == 1.0 and best.precision == 1.0 and best.recall == 1.0
    assert best.abstained == int(nm.sum()) == 50


def test_overlapping_scores_pick_the_f1_optimum_by_brute_force() -> None:
    rng = np.random.default_rng(3)
    nm = rng.random(300) < 0.3
    scores = np.where(nm, rng.normal(0.3, 0.15, 300), rng.normal(0.6, 0.15, 300))
    best = find_threshold(scores, nm)
    grid = np.linspace(scores.min() - 1, scores.max() + 1, 5001)
    assert best.f1 >= max(abstention_stats(scores, nm, t).f1 for t in grid) - 1e-12
    assert 0 < best.f1 < 1


def test_target_precision_is_met_with_most_recall() -> None:
    rng = np.random.default_rng(5)
    nm = rng.random(400) < 0.3
    scores = np.where(nm, rng.normal(0.3, 0.15, 400), rng.normal(0.6, 0.15, 400))
    s = find_threshold(scores, nm, target_precision=0.9)
    assert s.precision >= 0.9
    # one step further in the sorted scores would break the target or not add recall
    higher = [abstention_stats(scores, nm, t) for t in np.unique(scores) + 1e-9
              if t > s.threshold]
    assert all(h.precision < 0.9 or h.recall <= s.recall for h in higher)
    with pytest.raises(ConfigError, match="reaches abstention precision"):
        find_threshold(np.array([0.1, 0.2]), np.array([False, True]), target_precision=1.0)


def test_dev_without_no_match_queries_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no no-match queries"):
        find_threshold(np.array([0.1, 0.9]), np.array([False, False]))


def test_no_match_by_corpus_and_none_label() -> None:
    run = Run("m", "qs", [QueryResult("1", "a", {"L1": 1.0}, ["L1"], [1.0]),
                          QueryResult("2", "b", {"gone": 1.0}, ["L1"], [0.2]),
                          QueryResult("3", "c", {"无": 1.0}, ["L1"], [0.1]),
                          QueryResult("4", "d", {}, ["L1"], [0.1])])
    assert no_match_mask(run).tolist() == [False, False, False, True]
    assert no_match_mask(run, {"L1", "无"}, none_label="无").tolist() == [False, True, True, True]


def test_sigmoid_keeps_order_and_maps_logits() -> None:
    x = np.array([-800.0, -2.0, 0.0, 3.0, 800.0])
    assert sigmoid(x).tolist() == pytest.approx([0.0, 1 / (1 + math.e**2), 0.5,
                                                 1 / (1 + math.e**-3), 1.0])
    run = Run("r", "qs", [QueryResult("1", "a", {}, ["x"], [-2.0]),
                          QueryResult("2", "b", {}, [], [])])
    assert top_scores(run, use_sigmoid=True)[0] == pytest.approx(1 / (1 + math.e**2))
    assert top_scores(run)[1] == -math.inf


def test_calibrate_applies_the_dev_threshold_to_test() -> None:
    dev, test = _world(1, prefix="d"), _world(2, prefix="t")
    cal = calibrate(dev, test, ks=(1, 2))
    assert cal.test is not None and cal.test.precision == 1.0 and cal.test.recall == 1.0
    m = cal.test_metrics
    assert m["coverage"] == pytest.approx(0.75)
    # matchable ids are 1, 2, 3 mod 4; gold is at rank 1 only on even ids (2 mod 4): 50 of 150
    assert m["precise@1"] == pytest.approx(50 / 150)
    assert m["precise@2"] == pytest.approx(1.0)
    # e2e@1: 50 no-match abstained + 50 matchable right at 1, of 200
    assert m["e2e@1"] == pytest.approx((50 + 50) / 200)
    assert m["answered_precise@1"] == pytest.approx(50 / 150)
    with pytest.raises(ConfigError, match="both the dev and the test"):
        calibrate(dev, dev)


def test_hit_correctness_for_multi_gold_collections() -> None:
    from embedarena.evaluation.calibrate import answered_metrics

    run = Run("m", "qs", [QueryResult("1", "a", {"g1": 1.0, "g2": 1.0}, ["g1", "x"], [0.9, 0.1]),
                          QueryResult("2", "b", {}, ["x"], [0.2])])
    scores, nm = top_scores(run), no_match_mask(run)
    assert answered_metrics(run, scores, nm, 0.5, [1])["precise@1"] == 0.0
    hit = answered_metrics(run, scores, nm, 0.5, [1], correct="hit")
    assert hit["hit@1"] == 1.0 and hit["e2e@1"] == 1.0
    with pytest.raises(ConfigError):
        answered_metrics(run, scores, nm, 0.5, [1], correct="exact")


def test_e2e_objective_does_not_abstain_on_everything_when_scores_do_not_separate() -> None:
    from embedarena.evaluation.calibrate import correct_at_k, find_threshold_e2e

    # 40% no-match, top-1 scores independent of it: max F1 of abstention abstains on all
    # (F1 = 2·0.4/1.4 = 0.571 beats any partial split); e2e answers and keeps 60% right
    rng = np.random.default_rng(7)
    results = []
    for i in range(500):
        nm = i % 5 < 2
        results.append(QueryResult(str(i), f"q{i}", {} if nm else {f"g{i}": 1.0},
                                   [f"g{i}"], [float(rng.uniform())]))
    run = Run("m", "qs", results)
    scores, nm = top_scores(run), no_match_mask(run)
    f1 = find_threshold(scores, nm)
    assert f1.abstained >= 490 and f1.f1 == pytest.approx(2 * 0.4 / 1.4, abs=0.01)
    e2e = find_threshold_e2e(scores, nm, correct_at_k(run, nm, 1))
    assert e2e.abstained < 50
    # brute force: no threshold does better end to end
    right = correct_at_k(run, nm, 1)
    grid = np.linspace(-0.1, 1.1, 2001)
    best = max(float(np.where(nm, scores < t, (scores >= t) & right).mean()) for t in grid)
    chosen = float(np.where(nm, scores < e2e.threshold, (scores >= e2e.threshold) & right).mean())
    assert chosen >= best - 1e-12
