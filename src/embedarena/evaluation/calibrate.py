"""Calibrated "no label" thresholds: below which top-1 score should the system abstain?

Users match questions to a fixed label set, and some questions fit no label (CHIP-CDN even has
a "maps to nothing" label). Per model, on dev data that contains such *no-match* queries, we
pick the top-1 score threshold `t` (abstain when `top1 < t`) that maximises the F1 of
abstention (positive class = no-match), or the one with the most recall at a target precision,
then apply it to a test run and report abstention precision/recall next to precise@k.

A query is *no-match* when it has no relevant gold, when its gold is only the `none_label`, or
(given the corpus) when none of its gold ids is in the corpus. Thresholds are per model:
BM25, cosine and reranker scores live on different scales. Reranker logits can be
sigmoid-normalised first, so the threshold reads as a probability.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from embedarena.errors import ConfigError
from embedarena.evaluation.run import Run

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def sigmoid(x: FloatArray) -> FloatArray:
    """Numerically stable logistic function (reranker logits → probabilities)."""
    out = np.empty_like(x, dtype=np.float64)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def top_scores(run: Run, use_sigmoid: bool = False) -> FloatArray:
    """Top-1 score per query (-inf where nothing was retrieved: always abstain there)."""
    raw = np.array([r.scores[0] if r.scores else -math.inf for r in run.results],
                   dtype=np.float64)
    if use_sigmoid:
        finite = np.isfinite(raw)
        raw[finite] = sigmoid(raw[finite])
    return raw


def no_match_mask(run: Run, corpus_ids: Collection[str] | None = None,
                  none_label: str | None = None) -> BoolArray:
    """True for queries no label can answer (see the module doc)."""
    out = []
    for r in run.results:
        rel = [g for g in r.relevant if g != none_label]
        if corpus_ids is not None:
            rel = [g for g in rel if g in corpus_ids]
        out.append(not rel)
    return np.array(out, dtype=bool)


@dataclass(frozen=True)
class AbstentionStats:
    threshold: float
    n: int
    n_no_match: int
    abstained: int
    true_abstentions: int
    precision: float
    recall: float
    f1: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in asdict(self).items()}


def abstention_stats(scores: FloatArray, no_match: BoolArray, t: float) -> AbstentionStats:
    """Abstain when score < t; positive class = no-match. Precision of no abstention is NaN."""
    abst = scores < t
    tp = int((abst & no_match).sum())
    n_abst, n_pos = int(abst.sum()), int(no_match.sum())
    prec = tp / n_abst if n_abst else math.nan
    rec = tp / n_pos if n_pos else math.nan
    f1 = (2 * prec * rec / (prec + rec) if n_abst and n_pos and prec + rec > 0 else 0.0)
    return AbstentionStats(float(t), len(scores), n_pos, n_abst, tp, prec, rec, f1)


def candidate_thresholds(scores: FloatArray) -> list[float]:
    """Midpoints between consecutive distinct finite scores, plus one below and one above all
    (abstain never / always): every distinct decision is covered exactly once."""
    vals = np.unique(scores[np.isfinite(scores)])
    if len(vals) == 0:
        return [math.inf]
    mids = ((vals[:-1] + vals[1:]) / 2).tolist()
    span = float(vals[-1] - vals[0]) or 1.0
    return [float(vals[0] - span), *mids, float(vals[-1] + span)]


def find_threshold(scores: FloatArray, no_match: BoolArray,
                   target_precision: float | None = None) -> AbstentionStats:
    """Max-F1 threshold, or (with `target_precision`) the most recall at that precision.

    Ties keep the lower threshold (fewer abstentions: answering is the default).
    """
    if len(scores) != len(no_match):
        raise ValueError("scores and no_match differ in length")
    if not no_match.any():
        raise ConfigError("the dev data has no no-match queries (queries no label answers), so "
                          "an abstention threshold cannot be fitted; add some, mark them with "
                          "the none label, or give --corpus so missing gold counts as no-match")
    if no_match.all():
        raise ConfigError("every dev query is a no-match query; a threshold needs both kinds")
    stats = [abstention_stats(scores, no_match, t) for t in candidate_thresholds(scores)]
    if target_precision is None:
        return max(stats, key=lambda s: (s.f1, -s.threshold))
    if not 0 < target_precision <= 1:
        raise ConfigError(f"target precision must be in (0, 1], got {target_precision}")
    ok = [s for s in stats if s.abstained and s.precision >= target_precision]
    if not ok:
        best = max((s.precision for s in stats if s.abstained), default=math.nan)
        raise ConfigError(f"no threshold reaches abstention precision {target_precision:.2f} on "
                          f"the dev data (best: {best:.3f})")
    return max(ok, key=lambda s: (s.recall, -s.threshold))


CORRECTNESS = ("precise", "hit")
"""What makes an answered query right: every gold in the top k (seed 004's precise@k, for
label data), or any gold in the top k (collections with many relevant documents)."""


def correct_at_k(run: Run, no_match: BoolArray, k: int, correct: str = "precise") -> BoolArray:
    """Per query: is the ranked list right at k (matchable queries only; no-match → False)."""
    from embedarena.evaluation.metrics import hit_at_k, precise_at_k

    if correct not in CORRECTNESS:
        raise ConfigError(f"correct is one of {', '.join(CORRECTNESS)}, not {correct!r}")
    fn = precise_at_k if correct == "precise" else hit_at_k
    return np.array([not nm and fn(r.retrieved, r.gold, k) == 1.0
                     for r, nm in zip(run.results, no_match)], dtype=bool)


def find_threshold_e2e(scores: FloatArray, no_match: BoolArray, right: BoolArray
                       ) -> AbstentionStats:
    """The threshold with the best end-to-end accuracy: a no-match query is right iff the
    system abstains, a matchable one iff it answers and `right` holds.

    Max F1 of abstention ignores whether answered queries are right, so where top-1 scores
    barely separate no-match queries it happily abstains on everything; e2e weighs both sides.
    Ties keep the lower threshold.
    """
    if not no_match.any() or no_match.all():
        find_threshold(scores, no_match)  # raises the same clear errors
    best_t, best_v = -math.inf, -1.0
    for t in candidate_thresholds(scores):
        v = float(np.where(no_match, scores < t, (scores >= t) & right).mean())
        if v > best_v:
            best_t, best_v = t, v
    return abstention_stats(scores, no_match, best_t)


def answered_metrics(run: Run, scores: FloatArray, no_match: BoolArray, t: float,
                     ks: Sequence[int], correct: str = "precise") -> dict[str, float]:
    """precise@k (or hit@k) with the threshold applied.

    - `precise@k`: on matchable queries, no threshold (the plain retrieval number).
    - `answered_precise@k`: on matchable queries the system answered (did not abstain on).
    - `e2e@k`: over all queries, a no-match query is right iff abstained, a matchable one iff
      answered and every gold label is in the top k (what a user of the system experiences).
    - `coverage`: share of all queries answered.
    """
    from embedarena.evaluation.metrics import hit_at_k, precise_at_k

    if correct not in CORRECTNESS:
        raise ConfigError(f"correct is one of {', '.join(CORRECTNESS)}, not {correct!r}")
    fn = precise_at_k if correct == "precise" else hit_at_k
    answered = scores >= t
    out: dict[str, float] = {"coverage": float(answered.mean()) if len(answered) else math.nan}
    for k in ks:
        right = np.array([fn(r.retrieved, r.gold, k) if not nm else 0.0
                          for r, nm in zip(run.results, no_match)], dtype=np.float64)
        match = ~no_match
        out[f"{correct}@{k}"] = float(right[match].mean()) if match.any() else math.nan
        am = match & answered
        out[f"answered_{correct}@{k}"] = float(right[am].mean()) if am.any() else math.nan
        e2e = np.where(no_match, ~answered, answered & (right == 1.0))
        out[f"e2e@{k}"] = float(e2e.mean()) if len(e2e) else math.nan
    return out


@dataclass
class Calibration:
    """One model's fitted threshold (dev) and what it does on the test run."""

    model: str
    sigmoid: bool
    target_precision: float | None
    objective: str
    dev: AbstentionStats
    test: AbstentionStats | None
    test_metrics: dict[str, float]
    dev_queries: int
    test_queries: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "threshold": self.dev.threshold, "sigmoid": self.sigmoid,
            "target_precision": self.target_precision, "objective": self.objective,
            "dev": self.dev.to_dict(),
            "test": self.test.to_dict() if self.test else None,
            "test_metrics": {k: (None if not math.isfinite(v) else v)
                             for k, v in self.test_metrics.items()},
            "dev_queries": self.dev_queries, "test_queries": self.test_queries,
        }


def calibrate(dev: Run, test: Run, ks: Sequence[int] = (1, 2, 5), use_sigmoid: bool = False,
              target_precision: float | None = None, corpus_ids: Collection[str] | None = None,
              none_label: str | None = None, correct: str = "precise",
              objective: str = "f1") -> Calibration:
    """Fit on `dev`, apply to `test` (they must not share queries: that would flatter it)."""
    shared = {r.query.strip() for r in dev.results} & {r.query.strip() for r in test.results}
    if shared:
        raise ConfigError(f"{len(shared)} queries are in both the dev and the test run (e.g. "
                          f"{sorted(shared)[0]!r}); a threshold must be fitted on other queries")
    d_scores = top_scores(dev, use_sigmoid)
    d_nm = no_match_mask(dev, corpus_ids, none_label)
    if objective == "e2e":
        if target_precision is not None:
            raise ConfigError("a target precision and the e2e objective exclude each other")
        fitted = find_threshold_e2e(d_scores, d_nm, correct_at_k(dev, d_nm, min(ks), correct))
    elif objective == "f1":
        fitted = find_threshold(d_scores, d_nm, target_precision)
    else:
        raise ConfigError(f"objective is 'f1' or 'e2e', not {objective!r}")
    t_scores = top_scores(test, use_sigmoid)
    t_nm = no_match_mask(test, corpus_ids, none_label)
    test_stats = abstention_stats(t_scores, t_nm, fitted.threshold) if t_nm.any() else None
    return Calibration(dev.model, use_sigmoid, target_precision, objective, fitted, test_stats,
                       answered_metrics(test, t_scores, t_nm, fitted.threshold, ks, correct),
                       len(dev), len(test))
