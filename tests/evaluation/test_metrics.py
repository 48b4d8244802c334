"""Metric arithmetic, checked against the seed's worked example and against ir-measures/pytrec_eval
on random graded runs; spec parsing; per-query results and their files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from embedarena.errors import ConfigError, DataError
from embedarena.evaluation.metrics import (
    MetricSpec,
    RunMetrics,
    evaluate,
    get_metric,
    metric_names,
    parse_metric,
    parse_metrics,
    register_metric,
)
from embedarena.evaluation.run import QueryResult, Run


def qr(qid: str, gold: dict[str, float], retrieved: list[str]) -> QueryResult:
    scores = [float(len(retrieved) - i) for i in range(len(retrieved))]
    return QueryResult(qid=qid, query=f"q {qid}", gold=gold, retrieved=retrieved, scores=scores)


def score(name: str, retrieved: list[str], gold: dict[str, float]) -> float:
    return parse_metric(name).score(retrieved, gold)


# --- seed 004 -------------------------------------------------------------------------------


def test_seed_004_worked_example() -> None:
    gold = {"甲状腺结节": 1.0, "甲状腺癌": 1.0}
    predicted = ["甲状腺结节", "胆管炎", "胰腺囊肿", "宫颈上皮内瘤变", "甲状腺癌"]
    assert score("precise@1", predicted, gold) == 0.0
    assert score("precise@2", predicted, gold) == 0.0
    assert score("precise@5", predicted, gold) == 1.0
    # the same ranking is a hit at 1: the two metrics answer different questions
    assert score("hit@1", predicted, gold) == 1.0


def test_precise_is_zero_when_more_relevant_than_k() -> None:
    gold = {"a": 1.0, "b": 1.0, "c": 1.0}
    assert score("precise@2", ["a", "b", "c"], gold) == 0.0
    assert score("precise@3", ["a", "b", "c"], gold) == 1.0


def test_precise_differs_from_precision() -> None:
    gold = {"a": 1.0}
    ranked = ["a", "x", "y", "z", "w"]
    assert score("precise@5", ranked, gold) == 1.0
    assert score("precision@5", ranked, gold) == pytest.approx(0.2)


# --- edge cases ------------------------------------------------------------------------------


def test_k_larger_than_ranking() -> None:
    gold = {"a": 1.0, "b": 1.0}
    ranked = ["a", "b"]
    assert score("precision@10", ranked, gold) == pytest.approx(0.2)  # by k, as trec_eval
    assert score("recall@10", ranked, gold) == 1.0
    assert score("precise@10", ranked, gold) == 1.0
    assert score("map@10", ranked, gold) == 1.0
    assert score("ndcg@10", ranked, gold) == pytest.approx(1.0)


def test_empty_ranking_scores_zero() -> None:
    gold = {"a": 2.0}
    for name in ("precise@5", "hit@5", "recall@5", "precision@5", "mrr@5", "mrr", "map@5",
                 "map", "ndcg@5", "ndcg"):
        assert score(name, [], gold) == 0.0, name
    m = evaluate(Run("m", "s", [qr("1", gold, [])]), "precise@1,hit@1")
    assert m.n_excluded == 0 and m.mean("precise@1") == 0.0


def test_duplicates_count_at_first_occurrence_only() -> None:
    gold = {"a": 1.0, "b": 1.0}
    dup = ["a", "a", "b"]
    # b stays at rank 3 (the repeat keeps its slot): AP = (1/1 + 2/3) / 2
    assert score("map@3", dup, gold) == pytest.approx((1 + 2 / 3) / 2)
    assert score("precision@3", dup, gold) == pytest.approx(2 / 3)
    assert score("precision@2", dup, gold) == pytest.approx(1 / 2)
    assert score("precise@2", dup, gold) == 0.0
    assert score("ndcg@3", dup, gold) == pytest.approx(
        (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    # a repeated relevant id is not counted twice
    assert score("precision@2", ["a", "a"], {"a": 1.0}) == pytest.approx(0.5)
    assert score("ndcg@2", ["a", "a"], {"a": 3.0}) == pytest.approx(1.0)


def test_zero_grade_judgements_are_not_relevant() -> None:
    gold = {"a": 0.0, "b": 1.0}
    assert score("precise@1", ["b", "a"], gold) == 1.0  # a is judged but not required
    assert score("mrr", ["a", "b"], gold) == 0.5
    assert score("recall@1", ["a", "b"], gold) == 0.0
    assert score("ndcg@2", ["a", "b"], gold) == pytest.approx(1 / math.log2(3))


def test_graded_ndcg_uses_linear_gain() -> None:
    gold = {"a": 3.0, "b": 1.0}
    got = score("ndcg@2", ["b", "a"], gold)
    want = (1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3))
    assert got == pytest.approx(want)


def test_queries_without_relevant_gold_are_excluded_and_counted() -> None:
    run = Run("m", "s", [
        qr("1", {"a": 1.0}, ["a"]),
        qr("2", {"a": 0.0}, ["a"]),  # judged, none relevant
        qr("3", {}, ["a"]),  # no gold at all
        qr("4", {"b": 1.0}, ["a"]),
    ])
    m = evaluate(run, "precise@1,mrr")
    assert m.n_queries == 4 and m.n_excluded == 2 and m.n_evaluated == 2
    assert m.excluded_qids == ["2", "3"]
    assert m.mean("precise@1") == 0.5  # (1 + 0) / 2, not (1 + 0 + 0 + 0) / 4
    pq = m.per_query("precise@1")
    assert pq[0] == 1.0 and math.isnan(pq[1]) and math.isnan(pq[2]) and pq[3] == 0.0
    assert m.qids == ["1", "2", "3", "4"]


def test_all_queries_excluded_gives_nan_mean_and_null_json() -> None:
    m = evaluate(Run("m", "s", [qr("1", {}, ["a"])]), "hit@1")
    assert math.isnan(m.mean("hit@1"))
    assert m.to_json()["metrics"] == {"hit@1": None}


# --- specs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["precise@5", "hit@1", "recall@100", "precision@3", "mrr",
                                  "mrr@10", "map", "map@100", "ndcg", "ndcg@10"])
def test_spec_round_trips(text: str) -> None:
    spec = parse_metric(text)
    assert str(spec) == text
    assert parse_metric(str(spec)) == spec


def test_parse_metrics_syntax() -> None:
    got = [str(s) for s in parse_metrics("precise@1,2,5;recall@10, map")]
    assert got == ["precise@1", "precise@2", "precise@5", "recall@10", "map"]
    # a list (e.g. a CLI value split on commas) reads the same way
    assert parse_metrics(["precise@1", "2", "nDCG@10"]) == [
        MetricSpec("precise", 1), MetricSpec("precise", 2), MetricSpec("ndcg", 10)]
    # parsed specs mix with strings, and a bare cutoff repeats the spec's name
    assert [str(s) for s in parse_metrics([MetricSpec("hit", 1), "3"])] == ["hit@1", "hit@3"]
    # repeats collapse, order kept
    assert [str(s) for s in parse_metrics("hit@5,precise@1,hit@5")] == ["hit@5", "precise@1"]


@pytest.mark.parametrize("text,needle", [
    ("foo@5", "known metrics: hit, map, mrr, ndcg, precise, precision, r_cap, recall"),
    ("p@5", "ambiguous"),
    ("precise", "needs a cutoff"),
    ("hit", "needs a cutoff"),
    ("precise@0", "positive integer"),
    ("precise@x", "positive integer"),
    ("precise@-1", "positive integer"),
    ("5,precise@1", "no metric name"),
    ("@5", "expected NAME or NAME@K"),
    ("", "no metrics given"),
])
def test_bad_specs_raise_config_error(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_metrics(text)
    assert needle in str(e.value)


def test_registry_rejects_duplicates_and_lists_names() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_metric("precise", lambda r, g, k: 0.0)
    assert metric_names() == ["hit", "map", "mrr", "ndcg", "precise", "precision", "r_cap",
                              "recall"]
    assert get_metric("precise").percent and not get_metric("ndcg").percent


# --- RunMetrics files ------------------------------------------------------------------------


def _small_run() -> Run:
    return Run("bge", "原数据", [
        qr("1", {"甲状腺结节": 1.0, "甲状腺癌": 1.0},
           ["甲状腺结节", "胆管炎", "胰腺囊肿", "宫颈上皮内瘤变", "甲状腺癌"]),
        qr("2", {"胆管炎": 1.0}, ["胆管炎", "x"]),
        qr("3", {}, ["x"]),
    ])


def test_metrics_save_and_load_round_trip(tmp_path: Path) -> None:
    m = evaluate(_small_run(), "precise@1,2,5;mrr")
    path = tmp_path / "metrics.json"
    m.save(path)
    obj = json.loads(path.read_text(encoding="utf-8"))
    assert obj["metrics"] == {"precise@1": 0.5, "precise@2": 0.5, "precise@5": 1.0, "mrr": 1.0}
    assert (obj["n_queries"], obj["n_evaluated"], obj["n_excluded"]) == (3, 2, 1)
    assert obj["excluded_qids"] == ["3"]
    lines = (tmp_path / "metrics.per_query.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[2]) == {"qid": "3", "excluded": True, "precise@1": None,
                                    "precise@2": None, "precise@5": None, "mrr": None,
                                    "tied_positions": 0}
    back = RunMetrics.load(path)
    assert back.model == "bge" and back.query_set == "原数据"
    assert back.specs == m.specs and back.qids == m.qids and back.has_per_query
    for s in m.specs:
        np.testing.assert_array_equal(back.per_query(s), m.per_query(s))
    assert back.means == m.means and back.n_excluded == 1
    assert back.ties == m.ties and back.tied is not None and m.tied is not None
    np.testing.assert_array_equal(back.tied, m.tied)


def test_load_without_per_query_file_keeps_means_and_counts(tmp_path: Path) -> None:
    m = evaluate(_small_run(), "precise@1")
    path = tmp_path / "metrics.json"
    m.save(path, per_query=False)
    assert not (tmp_path / "metrics.per_query.jsonl").exists()
    back = RunMetrics.load(path)
    assert back.mean("precise@1") == 0.5 and not back.has_per_query
    assert (back.n_queries, back.n_excluded, back.excluded_qids) == (3, 1, ["3"])
    with pytest.raises(ConfigError, match="no per-query values"):
        back.per_query("precise@1")


# --- ties ----------------------------------------------------------------------------------


def test_ties_keep_the_engine_order_and_are_counted() -> None:
    # a and x tie at rank 1-2: the engine put x first, and that is what gets scored
    tied = QueryResult(qid="t", query="q", gold={"a": 1.0}, retrieved=["x", "a", "b", "c"],
                       scores=[2.0, 2.0, 1.0, 0.5])
    plain = qr("p", {"b": 1.0}, ["b", "x"])
    # the tie between y (rank 2) and z (rank 3) straddles the cutoff 2, so rank 2 counts
    edge = QueryResult(qid="e", query="q", gold={"y": 1.0}, retrieved=["w", "y", "z"],
                       scores=[3.0, 1.0, 1.0])
    none = QueryResult(qid="n", query="q", gold={}, retrieved=["a", "b"], scores=[1.0, 1.0])
    m = evaluate(Run("m", "s", [tied, plain, edge, none]), "mrr@2,ndcg@1")
    assert m.per_query("mrr@2")[0] == 0.5  # not 1.0: the tie is not resolved in a's favour
    assert m.ties is not None and m.tied is not None
    assert list(m.tied) == [2, 0, 1, 0]  # excluded queries (no relevant gold) count 0
    assert (m.ties.cutoff, m.ties.queries, m.ties.positions) == (2, 2, 3)
    assert m.to_json()["ties"] == {"cutoff": 2, "queries_with_ties": 2, "tied_positions": 3,
                                   "rule": m.to_json()["ties"]["rule"]}
    assert "engine's order" in m.to_json()["ties"]["rule"]
    # a metric over the whole list looks at every rank
    full = evaluate(Run("m", "s", [tied, edge]), "mrr@1,map")
    assert full.ties is not None and full.ties.cutoff is None
    assert (full.ties.queries, full.ties.positions) == (2, 4)


def test_metrics_json_without_ties_still_loads(tmp_path: Path) -> None:
    """metrics.json and per-query files written before ties were counted."""
    m = evaluate(_small_run(), "precise@1,mrr")
    path = tmp_path / "metrics.json"
    m.save(path)
    obj = json.loads(path.read_text(encoding="utf-8"))
    del obj["ties"]
    path.write_text(json.dumps(obj), encoding="utf-8")
    pq = tmp_path / "metrics.per_query.jsonl"
    rows = [json.loads(line) for line in pq.read_text(encoding="utf-8").splitlines()]
    pq.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "tied_positions"})
                          + "\n" for r in rows), encoding="utf-8")
    back = RunMetrics.load(path)
    assert back.ties is None and back.tied is None and back.has_per_query
    assert back.means == m.means
    assert "ties" not in back.to_json()
    assert "tied_positions" not in back.per_query_rows()[0]
    pq.unlink()
    assert RunMetrics.load(path).ties is None


def test_bad_metrics_file_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match="metrics.json"):
        RunMetrics.load(path)
    path.write_text(json.dumps({"metrics": {"bogus@1": 1.0}, "n_queries": 1}), encoding="utf-8")
    with pytest.raises(DataError, match="unknown metric 'bogus'"):
        RunMetrics.load(path)
