"""Is a gap between two models real? Paired tests over per-query metric values.

Two models scored on the same queries give paired values (a_i, b_i). We test the mean of the
differences d_i = b_i - a_i (other model minus baseline):

- **paired randomization test** (sign flip): under "no difference" each d_i is as likely to be
  -d_i, so the null distribution of mean(d) comes from flipping signs at random. Queries where
  both models score the same (d_i = 0, most queries for 0/1 metrics like precise@k) cannot change
  under a flip; they are left out of the resampling, which changes nothing in the p-value but
  lets small cases be enumerated exactly. When 2^m (m = queries that differ) is at most the
  number of resamples, every sign pattern is enumerated (exact test); otherwise patterns are
  drawn at random and the p-value gets the usual +1 correction so it is never 0. The two-sided
  p-value is twice the smaller one-sided p, clipped at 1, with a small relative tolerance for
  ties; this is exactly `scipy.stats.permutation_test(..., permutation_type="samples")` on the
  mean difference (checked in tests).
- **paired bootstrap** confidence interval of mean(d): queries are resampled with replacement
  and the percentile interval of the resampled means is reported (`scipy.stats.bootstrap`
  with `method="percentile"`).
- **Holm** step-down correction when one baseline is compared with several models, so "some
  model beat the baseline" is not claimed just because many were tried.

Everything is vectorised numpy, seeded, and works in chunks so thousands of queries times
10,000 resamples stay within a few megabytes of memory. When the differences take few distinct
values (0/1 metrics such as precise@k give only -1, 0 and 1) both procedures draw how many
queries of each value are flipped or resampled (binomial / multinomial counts), which is the
same distribution as drawing per query and much faster.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

DEFAULT_RESAMPLES = 10_000
DEFAULT_CONFIDENCE = 0.95
DEFAULT_SEED = 0
_CHUNK_ELEMENTS = 1 << 21  # resample rows per chunk x values per row stays below this
_MAX_GROUPS = 64
"""Up to this many distinct values, resampling draws counts per value instead of queries."""

RANDOMIZATION_METHOD = "paired randomization (sign-flip) test on the mean difference, two-sided"
BOOTSTRAP_METHOD = "paired bootstrap, percentile interval"
HOLM_METHOD = "Holm step-down correction across the models compared with the baseline"


def _diffs(a: Sequence[float] | FloatArray, b: Sequence[float] | FloatArray) -> FloatArray:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired values need two 1-d arrays of one length, got {x.shape} "
                         f"and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("paired values must be finite (drop excluded queries first)")
    return y - x


def _chunks(total: int, width: int) -> list[int]:
    rows = max(1, _CHUNK_ELEMENTS // max(1, width))
    return [min(rows, total - start) for start in range(0, total, rows)]


def randomization_test(a: Sequence[float] | FloatArray, b: Sequence[float] | FloatArray, *,
                       n_resamples: int = DEFAULT_RESAMPLES,
                       seed: int | None = DEFAULT_SEED) -> tuple[float, bool]:
    """Two-sided p-value of mean(b - a) under random sign flips; (p, exact).

    `exact` is True when every sign pattern of the differing queries was enumerated.
    """
    if n_resamples < 1:
        raise ValueError("n_resamples must be at least 1")
    d = _diffs(a, b)
    d = d[d != 0.0]
    m = d.size
    if m == 0:
        return 1.0, True  # identical on every query: nothing can be told apart
    observed = float(d.sum())
    gamma = abs(observed) * np.finfo(np.float64).eps * 100
    less = greater = 0
    if m < 63 and (1 << m) <= n_resamples:
        exact = True
        total = 1 << m
        bits = np.arange(m, dtype=np.int64)
        start = 0
        for rows in _chunks(total, m):
            codes = np.arange(start, start + rows, dtype=np.int64)
            start += rows
            signs = 1.0 - 2.0 * ((codes[:, None] >> bits) & 1)
            null = signs @ d
            less += int(np.count_nonzero(null <= observed + gamma))
            greater += int(np.count_nonzero(null >= observed - gamma))
        p_less, p_greater = less / total, greater / total
    else:
        exact = False
        rng = np.random.default_rng(seed)
        sizes, counts = np.unique(np.abs(d), return_counts=True)
        if sizes.size <= _MAX_GROUPS:
            # few distinct |d| (always so for 0/1 metrics): the flipped sum of the c queries
            # with |d| = s is s * (2 * Binomial(c, 1/2) - c), so draw those instead of signs
            for rows in _chunks(n_resamples, sizes.size):
                plus = rng.binomial(counts, 0.5, size=(rows, sizes.size))
                null = (2.0 * plus - counts) @ sizes
                less += int(np.count_nonzero(null <= observed + gamma))
                greater += int(np.count_nonzero(null >= observed - gamma))
        else:
            for rows in _chunks(n_resamples, m):
                signs = rng.integers(0, 2, size=(rows, m), dtype=np.int8).astype(np.float64)
                null = (1.0 - 2.0 * signs) @ d
                less += int(np.count_nonzero(null <= observed + gamma))
                greater += int(np.count_nonzero(null >= observed - gamma))
        p_less = (less + 1) / (n_resamples + 1)
        p_greater = (greater + 1) / (n_resamples + 1)
    return float(min(1.0, 2.0 * min(p_less, p_greater))), exact


def bootstrap_ci(a: Sequence[float] | FloatArray, b: Sequence[float] | FloatArray, *,
                 n_resamples: int = DEFAULT_RESAMPLES, confidence: float = DEFAULT_CONFIDENCE,
                 seed: int | None = DEFAULT_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(b - a), resampling queries (pairs) together."""
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be between 0 and 1")
    if n_resamples < 1:
        raise ValueError("n_resamples must be at least 1")
    d = _diffs(a, b)
    n = d.size
    if n == 0:
        return math.nan, math.nan
    if np.all(d == d[0]):
        return float(d[0]), float(d[0])  # every resample has the same mean
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples, dtype=np.float64)
    done = 0
    values, counts = np.unique(d, return_counts=True)
    if values.size <= _MAX_GROUPS:
        # few distinct differences: how often each is drawn in a resample of n queries is
        # multinomial, the same distribution as drawing n query indices, at a fraction of
        # the cost
        for rows in _chunks(n_resamples, values.size):
            drawn = rng.multinomial(n, counts / n, size=rows)
            means[done:done + rows] = (drawn @ values) / n
            done += rows
    else:
        for rows in _chunks(n_resamples, n):
            idx = rng.integers(0, n, size=(rows, n))
            means[done:done + rows] = d[idx].mean(axis=1)
            done += rows
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order (NaN stays NaN and is not counted)."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, math.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    if m == 0:
        return out.tolist()
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


@dataclass
class PairedComparison:
    """One model against the baseline on one metric, over the queries both were scored on."""

    baseline: str
    model: str
    metric: str
    n: int
    baseline_mean: float
    model_mean: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    exact: bool
    wins: int
    losses: int
    ties: int
    n_resamples: int
    confidence: float
    seed: int | None
    p_holm: float = math.nan

    def significant(self, alpha: float = 0.05, adjusted: bool = True) -> bool:
        p = self.p_holm if adjusted and not math.isnan(self.p_holm) else self.p_value
        return not math.isnan(p) and p < alpha

    def to_json(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in asdict(self).items()}


def compare_paired(baseline: str, model: str, metric: str,
                   a: Sequence[float] | FloatArray, b: Sequence[float] | FloatArray, *,
                   n_resamples: int = DEFAULT_RESAMPLES, confidence: float = DEFAULT_CONFIDENCE,
                   seed: int | None = DEFAULT_SEED) -> PairedComparison:
    """Means, difference, bootstrap CI, randomization p-value and win/loss/tie counts.

    `a` (baseline) and `b` (model) must be aligned query by query and hold no NaN; with no
    queries the numbers are NaN and the p-value is NaN (nothing was tested).
    """
    d = _diffs(a, b)
    n = d.size
    if n == 0:
        return PairedComparison(baseline, model, metric, 0, math.nan, math.nan, math.nan,
                                math.nan, math.nan, math.nan, True, 0, 0, 0, n_resamples,
                                confidence, seed)
    p, exact = randomization_test(a, b, n_resamples=n_resamples, seed=seed)
    low, high = bootstrap_ci(a, b, n_resamples=n_resamples, confidence=confidence, seed=seed)
    return PairedComparison(
        baseline=baseline, model=model, metric=metric, n=n,
        baseline_mean=float(np.mean(a)), model_mean=float(np.mean(b)), diff=float(d.mean()),
        ci_low=low, ci_high=high, p_value=p, exact=exact,
        wins=int(np.count_nonzero(d > 0)), losses=int(np.count_nonzero(d < 0)),
        ties=int(np.count_nonzero(d == 0)), n_resamples=n_resamples, confidence=confidence,
        seed=seed)


def apply_holm(results: Sequence[PairedComparison]) -> None:
    """Fill `p_holm` of results that share a baseline and metric (one family of tests)."""
    adjusted = holm([r.p_value for r in results])
    for r, p in zip(results, adjusted, strict=True):
        r.p_holm = p
