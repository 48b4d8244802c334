"""C-MTEB reranking evaluation: AP against scikit-learn, MAP/MRR against mteb 1.1.1's own
`RerankingEvaluator`, the tie rule, skipped samples, overlaps, the reader and the seed's split.

Verification on real data (recorded here; rerun with the mteb test below plus a MiniLM model):
mteb 1.1.1's `RerankingEvaluator.compute_metrics` fed the vectors of `minilm` for
shared/data/rag-retrieval-t2rank/t2rank_100.jsonl (negatives that are also positives dropped,
as we do) gave MAP 0.46844183113901827, MRR 0.5554642857142857; ours 0.46844183113901827,
0.5554642857142857. On the test part of test_size=0.1,seed=1: mteb 0.4110456385540558 /
0.5166666666666667, ours 0.4110456385540557 / 0.5166666666666667. (mteb on the raw lists, the
6 overlapping passages kept as negatives too: MAP 0.46722609621633560.)
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import random
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embedarena.data.readers import RerankSample, RerankSet, load_rerank_with_report
from embedarena.errors import ConfigError, DataError
from embedarena.evaluation.reranking import (
    EmbedderScorer,
    RerankerScorer,
    Split,
    average_precision,
    evaluate_file,
    evaluate_reranking,
    parse_split,
    score_sample,
    train_test_indices,
    write_split,
)

T2RANK = "rag-retrieval-t2rank/t2rank_100.jsonl"


class FakeEmbedder:
    """Vectors looked up by text (queries and documents from separate tables)."""

    name = "fake"
    fingerprint = "fake:1"

    def __init__(self, queries: dict[str, np.ndarray], docs: dict[str, np.ndarray]) -> None:
        self.queries, self.docs = queries, docs
        self.calls: list[int] = []

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.queries[t] for t in texts]).astype(np.float32)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        return np.stack([self.docs[t] for t in texts]).astype(np.float32)


class TableScorer:
    """Scores given per query text: a `Scorer` for tests that need exact score values."""

    name = "table"
    fingerprint = "table:1"

    def __init__(self, scores: dict[str, Sequence[float]]) -> None:
        self.scores = scores

    def score(self, queries: Sequence[str], cands: Sequence[Sequence[str]]) -> list[Any]:
        out = []
        for q, c in zip(queries, cands, strict=True):
            s = np.asarray(self.scores[q], dtype=np.float32)
            assert len(s) == len(c), (q, c)
            out.append(s)
        return out

    def stats(self) -> dict[str, int]:
        return {}


# --- AP against scikit-learn ---------------------------------------------------------------


def test_average_precision_matches_sklearn_with_ties() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = random.Random(0)
    checked = tied = 0
    for _ in range(2000):
        n = rng.randint(2, 40)
        rel = [rng.random() < 0.3 for _ in range(n)]
        if not any(rel):
            rel[rng.randrange(n)] = True
        # few distinct values → many ties, also across positives and negatives
        if rng.random() < 0.5:
            scores = [float(rng.randint(0, 4)) for _ in range(n)]
        else:
            scores = [float(np.float32(rng.uniform(-1, 1))) for _ in range(n)]
        tied += len(set(scores)) < n
        want = sklearn_metrics.average_precision_score(rel, scores)
        assert average_precision(rel, scores) == pytest.approx(want, rel=1e-12, abs=1e-15)
        checked += 1
    assert checked == 2000 and tied > 900


def test_hand_worked_ties() -> None:
    # everything ties (a tokenizer blind to the language): one threshold for AP, and the
    # stable order (positives first) makes MRR and nDCG perfect: the optimistic reading
    r = score_sample("q", [True, True, False, False, False], [0.3] * 5)
    assert r.ap == pytest.approx(2 / 5) and r.mrr == 1.0 and r.ndcg == pytest.approx(1.0)
    assert r.tied == 5 and r.mixed_tie
    # a positive ties a negative at rank 2: AP = 1/2 * 1 + 1/2 * 2/3
    r = score_sample("q", [True, True, False, False], [0.9, 0.5, 0.5, 0.1])
    assert r.ap == pytest.approx(0.5 + 0.5 * 2 / 3) and r.mrr == 1.0
    assert r.tied == 2 and r.mixed_tie
    # ties among negatives only change nothing and are not "mixed"
    r = score_sample("q", [False, True, False, False], [0.2, 0.1, 0.2, 0.2])
    assert r.ap == pytest.approx(1 / 4) and r.mrr == pytest.approx(1 / 4)
    assert r.tied == 3 and not r.mixed_tie
    # MRR@10 is 0 when the first positive ranks 11th; nDCG@10 too
    r = score_sample("q", [True] + [False] * 10, [0.0] + [1.0 + i for i in range(10)])
    assert r.mrr == 0.0 and r.ndcg == 0.0 and r.ap == pytest.approx(1 / 11) and r.tied == 0


# --- MAP/MRR against mteb 1.1.1 ------------------------------------------------------------


def _mteb_evaluators_dir() -> Path | None:
    """mteb 1.1.1's evaluators folder: EMBEDARENA_MTEB_EVALUATORS, or an mteb 1.1.1 install
    in this environment or in a scratch venv under /tmp (`pip install --no-deps mteb==1.1.1`;
    mteb is no dependency of the project)."""
    env = os.environ.get("EMBEDARENA_MTEB_EVALUATORS")
    if env:
        return Path(env)
    roots = [Path(p) for p in sys.path if p.endswith("site-packages")]
    roots += sorted(Path("/tmp").glob("*/lib/python3*/site-packages"))
    for root in roots:
        if (root / "mteb-1.1.1.dist-info").is_dir():
            d = root / "mteb" / "evaluation" / "evaluators"
            if (d / "RerankingEvaluator.py").is_file():
                return d
    return None


def _load_mteb_reranking_evaluator(root: Path) -> Any:
    """Its three modules only (RerankingEvaluator, Evaluator, utils: numpy, torch, tqdm,
    scikit-learn), loaded by path under a private package name, so neither mteb's
    `__init__` (datasets, sentence-transformers, ...) nor an install of it is needed."""
    pkg = types.ModuleType("_mteb111_evaluators")
    pkg.__path__ = [str(root)]
    sys.modules[pkg.__name__] = pkg
    for name in ("utils", "Evaluator", "RerankingEvaluator"):
        spec = importlib.util.spec_from_file_location(f"{pkg.__name__}.{name}",
                                                      root / f"{name}.py")
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[f"{pkg.__name__}.RerankingEvaluator"].RerankingEvaluator


def _synthetic(seed: int) -> tuple[list[RerankSample], FakeEmbedder]:
    """Samples with random vectors: untied ones of up to 30 candidates; tied ones (a
    positive and a negative sharing a vector, or the whole list one vector) of at most 16;
    one without a positive, one without a negative."""
    rng = np.random.default_rng(seed)
    queries: dict[str, np.ndarray] = {}
    docs: dict[str, np.ndarray] = {}
    samples = []
    for i in range(60):
        q = f"q{i}"
        queries[q] = rng.normal(size=8)
        kind = i % 6
        n_pos = 0 if kind == 4 else int(rng.integers(1, 6))
        n_neg = 0 if kind == 5 else int(rng.integers(1, 11 if kind in (1, 2) else 25))
        pos = [f"{q}p{j}" for j in range(n_pos)]
        neg = [f"{q}n{j}" for j in range(n_neg)]
        for t in pos + neg:
            docs[t] = rng.normal(size=8)
        if kind == 1 and pos and neg:  # a positive and a negative share a vector
            docs[neg[0]] = docs[pos[-1]]
        if kind == 2:  # the whole list ties
            for t in pos + neg:
                docs[t] = docs[(pos + neg)[0]]
        samples.append(RerankSample(str(i), q, pos, neg))
    return samples, FakeEmbedder(queries, docs)


def test_map_mrr_match_mteb_111_reranking_evaluator() -> None:
    """End to end (mteb encodes through a model object, computes cos_sim, sorts, averages) on
    the untied samples, and, on every sample, mteb's own metric functions
    (`mrr_at_k_score` on `torch.argsort(-scores)`, `ap_score`) fed our scores. Only the
    untied samples go end to end because mteb's `torch.mm` can give two equal vectors
    cosines one ulp apart (seen here), which turns a tie into float noise."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    pytest.importorskip("tqdm")
    root = _mteb_evaluators_dir()
    if root is None:
        pytest.skip("mteb 1.1.1 not found: python -m venv /tmp/mtebvenv && "
                    "/tmp/mtebvenv/bin/pip install --no-deps mteb==1.1.1")
    evaluator_cls = _load_mteb_reranking_evaluator(root)
    samples, emb = _synthetic(3)

    class Model:  # what mteb calls: encode_queries / encode_corpus
        def encode_queries(self, texts: list[str], **_: Any) -> np.ndarray:
            return emb.embed_queries(texts)

        def encode_corpus(self, texts: list[str], **_: Any) -> np.ndarray:
            return emb.embed_documents(texts)

    ours = evaluate_reranking(samples, EmbedderScorer(emb))
    assert ours.skipped == {"no positive": 10, "no negative": 10}
    assert ours.n_mixed_ties == 20 and ours.n_tied == 20  # kinds 1 and 2, all evaluated
    untied = [s for s, r in zip(samples, ours.samples, strict=True) if not r.tied]
    ev = evaluator_cls([{"query": s.query, "positive": s.positive, "negative": s.negative}
                        for s in untied])
    assert len(ev.samples) == 20  # mteb drops the 20 without a positive or a negative too
    ref = ev.compute_metrics(Model())
    ours_untied = evaluate_reranking(untied, EmbedderScorer(emb))
    assert ours_untied.means["map"] == pytest.approx(float(ref["map"]), abs=1e-12)
    assert ours_untied.means["mrr@10"] == pytest.approx(float(ref["mrr"]), abs=1e-12)
    # sample by sample, tied ones included, mteb's functions on our scores
    scores = EmbedderScorer(emb).score([s.query for s in samples],
                                       [s.positive + s.negative for s in samples])
    for s, r, sc in zip(samples, ours.samples, scores, strict=True):
        if r.skipped:
            continue
        rel = [True] * len(s.positive) + [False] * len(s.negative)
        order = torch.argsort(-torch.tensor(sc))
        assert r.ap == pytest.approx(float(evaluator_cls.ap_score(rel, sc.tolist())),
                                     abs=1e-12), s.qid
        # torch.argsort promises no order for ties; on <= 16 candidates torch's CPU sort
        # keeps them in input order, which is our documented rule, so MRR agrees too
        assert r.mrr == pytest.approx(evaluator_cls.mrr_at_k_score(rel, order, 10),
                                      abs=1e-12), s.qid


# --- evaluate_reranking ----------------------------------------------------------------------


def test_skipped_overlaps_and_ties_are_counted(tmp_path: Path) -> None:
    samples = [
        RerankSample("a", "qa", ["p1", "p2"], ["n1", "p1", "n2"]),  # p1 also a negative
        RerankSample("b", "qb", [], ["n"]),
        RerankSample("c", "qc", ["p"], []),
        RerankSample("d", "qd", ["p"], ["p"]),  # only negative is the positive → no negative
        RerankSample("e", "qe", ["p"], ["n1", "n2"]),
    ]
    scorer = TableScorer({"qa": [0.1, 0.9, 0.5, 0.3], "qe": [0.2, 0.2, 0.2]})
    res = evaluate_reranking(samples, scorer)
    assert [s.skipped for s in res.samples] == [None, "no positive", "no negative",
                                                "no negative", None]
    assert res.overlaps == (2, 2)
    a, e = res.samples[0], res.samples[4]
    assert (a.n_pos, a.n_neg, a.dropped_overlap) == (2, 2, 1)
    # qa ranks p2 > n1 > n2 > p1: AP = (1/1 + 2/4) / 2
    assert a.ap == pytest.approx(0.75) and a.mrr == 1.0 and a.tied == 0
    assert e.ap == pytest.approx(1 / 3) and e.mrr == 1.0 and e.mixed_tie
    assert res.n_tied == 1 and res.n_mixed_ties == 1
    assert res.means["map"] == pytest.approx((0.75 + 1 / 3) / 2)
    obj = res.to_json()
    assert obj["n_samples"] == 5 and obj["n_evaluated"] == 2 and obj["n_skipped"] == 3
    assert obj["ties"]["samples_with_ties"] == 1
    assert obj["ties"]["samples_with_positive_negative_ties"] == 1
    assert obj["overlap"] == {"samples": 2, "negatives_dropped": 2,
                              "rule": obj["overlap"]["rule"]}
    paths = res.save(tmp_path)
    assert [p.name for p in paths] == ["rerank.json", "rerank.per_sample.jsonl", "meta.json"]
    rows = [json.loads(x) for x in paths[1].read_text(encoding="utf-8").splitlines()]
    assert [r["qid"] for r in rows] == ["a", "b", "c", "d", "e"]
    assert rows[1]["ap"] is None and rows[1]["skipped"] == "no positive"
    assert rows[4]["mixed_tie"] is True and rows[0]["mrr@10"] == 1.0


def test_nothing_to_evaluate_gives_null_means() -> None:
    res = evaluate_reranking([RerankSample("1", "q", [], ["n"])], TableScorer({}))
    assert math.isnan(res.means["map"]) and res.to_json()["metrics"]["map"] is None


def test_embedder_scorer_embeds_each_text_once_and_uses_cosine() -> None:
    emb = FakeEmbedder({"q": np.array([1.0, 0.0])},
                       {"a": np.array([2.0, 0.0]), "b": np.array([0.0, 3.0]),
                        "c": np.array([1.0, 1.0])})
    out = EmbedderScorer(emb).score(["q", "q"], [["a", "b", "c"], ["c", "a"]])
    np.testing.assert_allclose(out[0], [1.0, 0.0, 2 ** -0.5], rtol=1e-6)
    np.testing.assert_allclose(out[1], [2 ** -0.5, 1.0], rtol=1e-6)
    assert out[0].dtype == np.float32 and emb.calls == [3]


def test_reranker_scorer_splits_one_call_by_query() -> None:
    class Fake:
        name, fingerprint = "rr", "rr:1"
        pairs: list[tuple[str, str]] = []

        def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
            Fake.pairs = list(pairs)
            return np.arange(len(pairs), dtype=np.float32)

    out = RerankerScorer(Fake()).score(["q1", "q2"], [["a", "b"], ["c"]])
    assert [o.tolist() for o in out] == [[0.0, 1.0], [2.0]]
    assert Fake.pairs == [("q1", "a"), ("q1", "b"), ("q2", "c")]


# --- reader ----------------------------------------------------------------------------------


def test_reader_t2rank_sample(shared_data: Path) -> None:
    data, report = load_rerank_with_report(shared_data / T2RANK)
    assert len(data) == 100 and data.keys == ("pos", "neg") and report.loaded == 100
    assert data.samples[0].qid == "1" and len(data.samples[0].negative) == 15
    res = evaluate_reranking(data.samples, TableScorer(
        {s.query: [0.0] * len(s.positive) + [0.0] * (len(s.negative) - len(
            set(s.negative) & set(s.positive))) for s in data.samples}))
    assert res.overlaps == (6, 6)  # shared/data/README.md: 6 queries, one passage each
    assert res.n_tied == 100  # all-zero scores: every list ties


def test_reader_formats_and_errors(tmp_path: Path) -> None:
    p = tmp_path / "t2.jsonl"
    p.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"query": "问", "positive": ["甲"], "negative": ["乙", "丙"]},
        {"id": "x7", "query": "问2", "positive": [], "negative": ["乙"]},
    ]) + "\n", encoding="utf-8")
    data, report = load_rerank_with_report(p)
    assert data.keys == ("positive", "negative") and report.format.startswith("T2Reranking")
    assert [s.qid for s in data.samples] == ["1", "x7"] and data.samples[1].positive == []
    q = tmp_path / "queries.jsonl"
    q.write_text(json.dumps({"query": "a", "pos": ["b"]}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="not reranking data"):
        load_rerank_with_report(q)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"query": "a", "pos": ["b"], "neg": ["c"]}) + "\n"
                   + json.dumps({"query": "a", "pos": ["b"]}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="missing field 'neg'"):
        load_rerank_with_report(bad)
    data, report = load_rerank_with_report(bad, skip_bad=True)
    assert len(data) == 1 and report.skipped == {"missing field": 1}


# --- the seed's split ------------------------------------------------------------------------

# From `datasets.Dataset.from_dict({"i": list(range(n))}).train_test_split(test_size=ts,
# seed=s)`, run with datasets 5.2.0 (numpy 2.4.6) and datasets 2.16.1 (numpy 1.26.4, the
# era of mteb 1.1.1) in scratch venvs: both gave these indices, and train_test_indices gave
# the same for all seven cases checked (n, ts, s) = (100, 0.1, 1), (100, 0.1, 42),
# (70, 0.1, 1), (6129, 0.1, 1), (13, 0.25, 0), (100, 7, 3), (30, 0.3, 5). The seed's whole
# train.jsonl pipeline (load_dataset("json") on t2rank_100.jsonl, split, filter, to_json)
# gave records equal to ours, in the same order.
DATASETS_100_TEST = [48, 8, 16, 81, 6, 99, 38, 5, 55, 34]
DATASETS_100_TRAIN_HEAD = [20, 67, 56, 85, 87, 17, 60, 43, 19, 80]
DATASETS_6129_TEST_HEAD = [5101, 6062, 2007, 4104, 2835, 221, 3715, 596, 1245, 5279]


def test_split_equals_datasets_train_test_split() -> None:
    train, test = train_test_indices(100, parse_split("test_size=0.1,seed=1"))
    assert test == DATASETS_100_TEST and train[:10] == DATASETS_100_TRAIN_HEAD
    assert sorted(train + test) == list(range(100))
    train, test = train_test_indices(6129, Split(0.1, 1))
    assert len(test) == 613 and test[:10] == DATASETS_6129_TEST_HEAD and len(train) == 5516
    assert len(train_test_indices(100, parse_split("test_size=7,seed=3"))[1]) == 7


@pytest.mark.parametrize("text,needle", [
    ("test_size=0.1", "needs both"), ("seed=1,test_size=x", "is a number"),
    ("size=0.1,seed=1", "expected test_size"), ("test_size=0.1,seed=-1", ">= 0"),
])
def test_bad_splits(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_split(text)


@pytest.mark.parametrize("size", [1.5, 0.0, 100, 0])
def test_split_sizes_outside_the_data(size: float | int) -> None:
    with pytest.raises(ConfigError):
        train_test_indices(100, Split(size, 1))


def test_write_split(tmp_path: Path) -> None:
    data = RerankSet("d", [RerankSample(str(i), f"q{i}", [f"p{i}"] if i % 3 else [],
                                        [f"n{i}"]) for i in range(10)], "d.jsonl",
                     ("positive", "negative"))
    train, test = train_test_indices(10, Split(0.2, 1))
    tr, te, n = write_split(data, train, test, tmp_path)
    rows = [json.loads(x) for x in tr.read_text(encoding="utf-8").splitlines()]
    kept = [i for i in train if i % 3]
    assert n == len(kept) == len(rows) and [r["query"] for r in rows] == [f"q{i}" for i in kept]
    assert set(rows[0]) == {"query", "pos", "neg"}
    back, _ = load_rerank_with_report(te)
    assert [s.qid for s in back.samples] == [str(i) for i in test]
    assert back.keys == ("positive", "negative")


def test_evaluate_file_with_split(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / T2RANK
    data, _ = load_rerank_with_report(path)
    scorer = TableScorer({s.query: [1.0] * len(s.positive)
                          + [0.0] * len([n for n in s.negative if n not in s.positive])
                          for s in data.samples})
    res = evaluate_file(path, "minilm", split="test_size=0.1,seed=1", out_dir=tmp_path,
                        scorer=scorer)
    assert [s.qid for s in res.samples] == [str(i + 1) for i in DATASETS_100_TEST]
    assert res.means == {"map": 1.0, "mrr@10": 1.0, "ndcg@10": 1.0}
    meta = json.loads((tmp_path / "meta.json").read_text(encoding="utf-8"))
    assert meta["split"]["n_test"] == 10 and meta["split"]["train_written"] == 90
    assert meta["model_settings"]["type"] == "hf" and meta["fingerprint"] == "table:1"
    assert {p.name for p in tmp_path.iterdir()} == {
        "rerank.json", "rerank.per_sample.jsonl", "meta.json", "train.jsonl", "test.jsonl"}


def test_bm25_cannot_score_candidates(shared_data: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be used here"):
        evaluate_file(shared_data / T2RANK, "bm25", scorer=TableScorer({}))
