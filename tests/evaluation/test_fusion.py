"""Fusion maths on hand-made runs: RRF with k, weighted sums with each normalisation, ties,
run alignment, and a tuner that can only ever see the dev queries."""

from __future__ import annotations

import math

import pytest

from embedarena.errors import ConfigError
from embedarena.evaluation.fusion import (
    FusionParams,
    fuse_runs,
    normalize_scores,
    param_grid,
    rrf,
    tune,
    weight_grid,
    weighted,
)
from embedarena.evaluation.run import QueryResult, Run

A = [("a", 10.0), ("b", 5.0), ("c", 0.0)]
B = [("c", 0.9), ("a", 0.5), ("d", 0.1)]


def _ids(fused: list[tuple[str, float]]) -> list[str]:
    return [d for d, _ in fused]


def test_rrf_scores_are_reciprocal_ranks_with_k() -> None:
    fused = dict(rrf([A, B], k=60))
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["b"] == pytest.approx(1 / 62)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert fused["d"] == pytest.approx(1 / 63)
    assert _ids(rrf([A, B], k=60)) == ["a", "c", "b", "d"]


def test_rrf_k_changes_the_order() -> None:
    # p: rank 1 in one list only; q: rank 3 in both. k=0 favours the single top hit,
    # k=60 favours agreement: 1/1 > 2/3 but 1/61 < 2/63.
    x = [("p", 1.0), ("y", 0.9), ("q", 0.8)]
    y = [("z", 1.0), ("w", 0.9), ("q", 0.8)]
    assert _ids(rrf([x, y], k=0)).index("p") < _ids(rrf([x, y], k=0)).index("q")
    assert _ids(rrf([x, y], k=60)).index("q") < _ids(rrf([x, y], k=60)).index("p")


def test_rrf_weights_scale_each_member() -> None:
    fused = dict(rrf([A, B], k=10, weights=[2.0, 0.5]))
    assert fused["a"] == pytest.approx(2 / 11 + 0.5 / 12)
    assert fused["d"] == pytest.approx(0.5 / 13)


def test_weighted_minmax_by_hand() -> None:
    # A → a 1, b .5, c 0; B → c 1, a .5, d 0; a missing doc gets the floor 0
    fused = dict(weighted([A, B], [0.5, 0.5], "minmax"))
    assert fused == pytest.approx({"a": 0.75, "b": 0.25, "c": 0.5, "d": 0.0})
    assert _ids(weighted([A, B], [0.2, 0.8], "minmax")) == ["c", "a", "b", "d"]
    assert dict(weighted([A, B], [0.2, 0.8], "minmax"))["c"] == pytest.approx(0.8)


def test_weighted_zscore_by_hand() -> None:
    z = math.sqrt(3 / 2)  # z of [10, 5, 0] (population std) is [+1.2247, 0, -1.2247]
    fused = dict(weighted([A, B], [0.5, 0.5], "zscore"))
    # missing docs get the member's lowest z (-z): b is missing from B, d from A
    assert fused["a"] == pytest.approx(0.5 * z + 0.5 * 0)
    assert fused["b"] == pytest.approx(0.5 * 0 + 0.5 * -z)
    assert fused["c"] == pytest.approx(0.5 * -z + 0.5 * z)
    assert fused["d"] == pytest.approx(-z)
    assert _ids(weighted([A, B], [0.5, 0.5], "zscore")) == ["a", "c", "b", "d"]


def test_normalisation_edge_cases() -> None:
    assert normalize_scores([], "minmax") == []
    assert normalize_scores([3.0, 3.0], "minmax") == [1.0, 1.0]
    assert normalize_scores([3.0, 3.0], "zscore") == [0.0, 0.0]
    assert normalize_scores([2.0, 4.0], "zscore") == pytest.approx([-1.0, 1.0])
    with pytest.raises(ConfigError):
        normalize_scores([1.0], "softmax")  # type: ignore[arg-type]


def test_ties_break_by_best_rank_then_member_order() -> None:
    # a and b swap places: equal RRF scores; both have best rank 1, a in the first member
    assert _ids(rrf([[("a", 1), ("b", 0)], [("b", 1), ("a", 0)]], k=60)) == ["a", "b"]
    assert _ids(rrf([[("b", 1), ("a", 0)], [("a", 1), ("b", 0)]], k=60)) == ["b", "a"]
    # equal weighted scores, different best ranks: the better-ranked one first
    tie = weighted([[("x", 1.0), ("y", 1.0)], []], [1.0, 1.0], "minmax")
    assert tie == [("x", 1.0), ("y", 1.0)]


def _reference_order(lists: list[list[tuple[str, float]]],
                     score: dict[str, float]) -> list[str]:
    """The documented order, computed without the module: -score, best rank, its member,
    doc id; documents visited in sorted-id order (not in the order they arrive)."""
    def key(d: str) -> tuple[float, int, int, str]:
        best = min((rank, m) for m, lst in enumerate(lists)
                   for rank, (doc, _) in enumerate(lst, start=1) if doc == d)
        return (-score[d], best[0], best[1], d)

    return sorted(sorted(score), key=key)


def test_order_does_not_depend_on_arrival_order() -> None:
    """Many exact ties (RRF of mirrored ranks): the fused order must follow the documented
    tie rule, never the order in which documents happened to be inserted."""
    import random

    rng = random.Random(7)
    for case in range(200):
        docs = [f"d{i}" for i in range(rng.randint(2, 8))]
        lists = []
        for _ in range(rng.randint(2, 3)):
            picked = rng.sample(docs, rng.randint(1, len(docs)))
            lists.append([(d, float(len(picked) - i)) for i, d in enumerate(picked)])
        k = rng.choice([0, 1, 60])
        score = {}
        for d in sorted({d for lst in lists for d, _ in lst}):
            total = 0.0
            for lst in lists:  # same member order of additions as the module: exact floats
                ranks = [r for r, (doc, _) in enumerate(lst, start=1) if doc == d]
                if ranks:
                    total += 1.0 / (k + ranks[0])
            score[d] = total
        got = rrf(lists, k=k)
        assert _ids(got) == _reference_order(lists, score), (case, lists)
        assert dict(got) == score
        # the same lists given in reverse member order: the same scores, and ties now go to
        # what was the last member (the rule, not the insertion order, decides)
        rev = list(reversed(lists))
        assert _ids(rrf(rev, k=k)) == _reference_order(rev, score)


def test_duplicates_count_once() -> None:
    fused = dict(rrf([[("a", 3), ("a", 2), ("b", 1)]], k=0))
    assert fused == pytest.approx({"a": 1.0, "b": 0.5})


def test_params_are_validated() -> None:
    with pytest.raises(ConfigError, match=">= 0"):
        FusionParams("weighted", weights=(-1.0, 2.0))
    with pytest.raises(ConfigError, match="> 0"):
        FusionParams("weighted", weights=(0.0, 0.0))
    with pytest.raises(ConfigError, match="2 fusion weights for 3"):
        FusionParams("rrf", weights=(1.0, 1.0)).weights_for(3)


def _run(model: str, rows: dict[str, list[tuple[str, float]]],
         gold: dict[str, str]) -> Run:
    return Run(model, "qs", [QueryResult(q, f"text {q}", {gold[q]: 1.0},
                                         [d for d, _ in hits], [s for _, s in hits])
                             for q, hits in rows.items()])


def test_fuse_runs_aligns_by_qid_and_cuts_depth() -> None:
    gold = {"1": "a", "2": "d"}
    r1 = _run("bm25", {"1": A, "2": B}, gold)
    r2 = _run("dense", {"2": A, "1": B}, gold)  # other query order
    fused = fuse_runs([r1, r2], FusionParams("rrf", k=60), depth=2, model="hyb")
    assert [r.qid for r in fused.results] == ["1", "2"]
    assert fused.results[0].retrieved == ["a", "c"]
    assert len(fused.results[1].retrieved) == 2
    assert fused.meta["members"] == ["bm25", "dense"] and fused.meta["fusion"] == "rrf"
    r3 = _run("other", {"1": A}, {"1": "a"})
    with pytest.raises(ConfigError, match="different queries"):
        fuse_runs([r1, r3], FusionParams(), 2, "x")


def test_weight_grid_is_the_simplex() -> None:
    g = weight_grid(2, 0.25)
    assert g == [(0.0, 1.0), (0.25, 0.75), (0.5, 0.5), (0.75, 0.25), (1.0, 0.0)]
    assert all(sum(w) == pytest.approx(1) for w in weight_grid(3, 0.1))
    assert len(param_grid(2, ("weighted",), 0.5)) == 3 * 2


def _split_world(n: int = 20) -> tuple[Run, Run, list[str], list[str]]:
    """Dev queries (odd) are answered by member 2 only, test queries (even) by member 1 only.

    Under equal weights the two top hits tie and the tie goes to member 1, so only the
    weights (0, 1) get the dev queries right."""
    gold = {str(i): f"g{i}" for i in range(n)}
    rows1, rows2 = {}, {}
    for i in range(n):
        right = [(f"g{i}", 1.0), (f"x{i}", 0.5)]
        wrong = [(f"y{i}", 1.0), (f"z{i}", 0.5), (f"g{i}", 0.1)]
        rows1[str(i)], rows2[str(i)] = (wrong, right) if i % 2 else (right, wrong)
    dev = [str(i) for i in range(n) if i % 2]
    test = [str(i) for i in range(n) if not i % 2]
    return _run("m1", rows1, gold), _run("m2", rows2, gold), dev, test


def test_tuning_sees_only_dev_queries_and_ignores_test_data() -> None:
    from embedarena.evaluation.fusion import subset_run

    m1, m2, dev, test = _split_world()
    grid = param_grid(2, ("weighted",), 0.5, normalizations=("minmax",))
    res = tune([subset_run(m1, dev), subset_run(m2, dev)], "precise@1", grid, depth=5)
    assert res.seen_qids == frozenset(dev) and not res.seen_qids & set(test)
    assert res.best.weights == (0.0, 1.0) and res.best_score == 1.0
    assert dict(res.scores)[FusionParams("weighted", 60, (0.5, 0.5))] == 0.0
    # the test half says the opposite; tuning on dev must not notice
    m1b, m2b = _run("m1", {}, {}), _run("m2", {}, {})
    m1b.results = [r for r in m1.results if r.qid in dev]
    m2b.results = [r for r in m2.results if r.qid in dev]
    res2 = tune([m1b, m2b], "precise@1", grid, depth=5)
    assert res2.best == res.best


def test_tune_then_test_never_hands_test_queries_to_the_tuner(monkeypatch) -> None:  # noqa: ANN001
    import embedarena.evaluation.fusion as fusion

    m1, m2, dev, test = _split_world()
    seen: list[set[str]] = []
    real = fusion.tune

    def spy(runs, *a, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        seen.append({r.qid for run in runs for r in run.results})
        return real(runs, *a, **kw)

    monkeypatch.setattr(fusion, "tune", spy)
    grid = param_grid(2, ("weighted",), 0.5, normalizations=("minmax",))
    rep = fusion.tune_then_test([m1, m2], dev, test, "precise@1", grid, 5, ["hit@2"])
    assert seen == [set(dev)]
    assert rep.tune.best.weights == (0.0, 1.0)
    by = {(r["split"], r["system"]): r for r in rep.rows}
    # tuned on dev (member 2 right), so on test (member 1 right) it is honestly bad
    assert by[("dev", "fused (tuned)")]["precise@1"] == 1.0
    assert by[("test", "fused (tuned)")]["precise@1"] == 0.0
    assert by[("test", "m1")]["precise@1"] == 1.0


def test_overlapping_splits_are_refused() -> None:
    from embedarena.evaluation.fusion import tune_then_test

    m1, m2, dev, test = _split_world()
    grid = param_grid(2, ("rrf",), 0.5, ks=(60,))
    with pytest.raises(ConfigError, match="both the dev and the test"):
        tune_then_test([m1, m2], dev, [*test, dev[0]], "precise@1", grid, 5, [])
    # the same text under another qid is a leak too
    m1.results[0] = QueryResult("dup", m1.results[1].query, {"g": 1.0}, ["g"], [1.0])
    m2.results[0] = QueryResult("dup", m1.results[1].query, {"g": 1.0}, ["g"], [1.0])
    with pytest.raises(ConfigError, match="query texts"):
        tune_then_test([m1, m2], [m1.results[1].qid], ["dup"], "precise@1", grid, 5, [])


def test_tuned_fusion_is_tested_against_the_best_member_on_test() -> None:
    from embedarena.evaluation.fusion import tune_then_test

    m1, m2, dev, test = _split_world()
    grid = param_grid(2, ("weighted",), 0.5, normalizations=("minmax",))
    rep = tune_then_test([m1, m2], dev, test, "precise@1", grid, 5, [])
    v = rep.versus
    assert v["best_member"] == "m1" and v["best_member_value"] == 1.0
    assert v["tuned_value"] == 0.0 and v["difference"] == -1.0
    assert v["p_value"] < 0.01  # 10 of 10 test queries lost: a real difference
