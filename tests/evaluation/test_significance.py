"""Paired randomization test, bootstrap CI and Holm correction: constructed cases and
cross-checks against scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embedarena.evaluation.significance import (
    apply_holm,
    bootstrap_ci,
    compare_paired,
    holm,
    randomization_test,
)

stats = pytest.importorskip("scipy.stats")


def mean_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(y - x, axis=axis)


def test_identical_runs_show_no_difference() -> None:
    a = np.array([1, 0, 1, 1, 0, 0.5, 0.25] * 20, dtype=float)
    r = compare_paired("bge", "bge again", "precise@1", a, a.copy())
    assert r.p_value == 1.0
    assert r.diff == 0.0
    assert (r.ci_low, r.ci_high) == (0.0, 0.0)
    assert (r.wins, r.losses, r.ties) == (0, 0, a.size)
    assert not r.significant()


def test_model_that_wins_every_query_has_tiny_p() -> None:
    a = np.zeros(40)
    b = np.ones(40)
    r = compare_paired("bge", "bge ft", "precise@1", a, b)
    # 2^40 sign patterns: drawn at random; only the all-plus pattern reaches the observed sum
    assert not r.exact
    assert r.p_value <= 2 / 10_001 + 1e-12
    assert r.significant()
    assert r.ci_low == r.ci_high == 1.0
    assert (r.wins, r.losses, r.ties) == (40, 0, 0)


def test_small_all_wins_is_enumerated_exactly() -> None:
    p, exact = randomization_test(np.zeros(8), np.ones(8))
    assert exact
    assert p == pytest.approx(2 / 2**8)  # the two extreme patterns of 256


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_p_equals_scipy_permutation_test(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.random(11)
    b = a + rng.normal(0.05, 0.2, 11)
    ours, exact = randomization_test(a, b)
    ref = stats.permutation_test((a, b), mean_diff, permutation_type="samples",
                                 vectorized=True, n_resamples=10_000)
    assert exact
    assert ours == pytest.approx(ref.pvalue, abs=1e-12)


def test_random_p_close_to_scipy_on_many_queries() -> None:
    rng = np.random.default_rng(7)
    a = (rng.random(300) < 0.50).astype(float)
    b = (rng.random(300) < 0.58).astype(float)
    ours, exact = randomization_test(a, b, n_resamples=10_000, seed=3)
    ref = stats.permutation_test((a, b), mean_diff, permutation_type="samples",
                                 vectorized=True, n_resamples=10_000, rng=11)
    assert not exact
    assert ours == pytest.approx(ref.pvalue, abs=0.02)
    assert 0.0 < ours < 1.0


def test_binary_exact_case_equals_binomial_sign_test() -> None:
    # 0/1 metrics: only discordant queries matter, and the sign-flip test becomes the exact
    # two-sided binomial (sign / McNemar) test on them
    a = np.array([0] * 9 + [1] * 3 + [1] * 50 + [0] * 30, dtype=float)
    b = np.array([1] * 9 + [0] * 3 + [1] * 50 + [0] * 30, dtype=float)
    ours, exact = randomization_test(a, b)
    assert exact  # 12 discordant queries: 4096 patterns
    assert ours == pytest.approx(stats.binomtest(9, 12, 0.5).pvalue, abs=1e-12)


def test_bootstrap_ci_close_to_scipy_percentile() -> None:
    rng = np.random.default_rng(5)
    a = rng.random(300)
    b = a + rng.normal(0.03, 0.1, 300)
    low, high = bootstrap_ci(a, b, n_resamples=10_000, seed=1)
    ref = stats.bootstrap((a, b), mean_diff, paired=True, vectorized=True,
                          method="percentile", n_resamples=10_000, rng=2)
    width = high - low
    assert low == pytest.approx(ref.confidence_interval.low, abs=0.05 * width)
    assert high == pytest.approx(ref.confidence_interval.high, abs=0.05 * width)
    assert low < float(np.mean(b - a)) < high


def test_confidence_level_widens_interval() -> None:
    rng = np.random.default_rng(9)
    a, b = rng.random(200), rng.random(200)
    lo90, hi90 = bootstrap_ci(a, b, confidence=0.90)
    lo99, hi99 = bootstrap_ci(a, b, confidence=0.99)
    assert lo99 < lo90 < hi90 < hi99


def test_direction_and_symmetry() -> None:
    rng = np.random.default_rng(4)
    a = (rng.random(200) < 0.4).astype(float)
    b = np.maximum(a, (rng.random(200) < 0.2).astype(float))  # b only ever gains
    fwd = compare_paired("x", "y", "precise@1", a, b)
    back = compare_paired("y", "x", "precise@1", b, a)
    assert fwd.diff > 0 and back.diff == -fwd.diff
    assert fwd.p_value == pytest.approx(back.p_value)
    assert (fwd.wins, fwd.losses) == (back.losses, back.wins)
    assert fwd.ci_low == pytest.approx(-back.ci_high) and fwd.ci_high == pytest.approx(
        -back.ci_low)


def test_noise_is_not_significant() -> None:
    a = np.array([1, 0] * 30, dtype=float)
    b = np.array([1, 0] * 27 + [0, 1] * 3, dtype=float)  # 3 wins, 3 losses
    r = compare_paired("x", "y", "precise@1", a, b)
    assert r.p_value == 1.0
    assert not r.significant()


def test_seeded_and_reproducible() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random(500), rng.random(500)
    assert compare_paired("x", "y", "m", a, b, seed=42) == compare_paired("x", "y", "m", a, b,
                                                                           seed=42)


def test_empty_pairs() -> None:
    r = compare_paired("x", "y", "m", [], [])
    assert r.n == 0 and math.isnan(r.p_value) and math.isnan(r.diff)
    assert not r.significant()


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="finite"):
        randomization_test([1.0, math.nan], [1.0, 0.0])
    with pytest.raises(ValueError, match="one length"):
        bootstrap_ci([1.0, 0.0], [1.0])


def test_holm_matches_hand_computation() -> None:
    # sorted 0.01, 0.03, 0.04 → 3*0.01, max(0.03, 2*0.03), max(0.06, 1*0.04)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    out = holm([0.02, math.nan, 0.01])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)


def test_apply_holm_fills_adjusted_p() -> None:
    a = np.zeros(20)
    results = [compare_paired("x", f"m{i}", "m", a, np.r_[np.ones(i), np.zeros(20 - i)])
               for i in (12, 3)]
    apply_holm(results)
    assert results[0].p_holm == pytest.approx(min(1.0, 2 * results[0].p_value))
    assert results[1].p_holm >= results[1].p_value


def test_grouped_and_per_query_resampling_agree() -> None:
    # 0/1 metrics take the count-based path; perturbing the values by tiny distinct amounts
    # forces the per-query path on (practically) the same data
    rng = np.random.default_rng(12)
    a = (rng.random(400) < 0.45).astype(float)
    b = (rng.random(400) < 0.52).astype(float)
    jitter = np.arange(400) * 1e-9
    p_grouped, _ = randomization_test(a, b, seed=1)
    p_each, _ = randomization_test(a, b + jitter, seed=1)
    assert p_grouped == pytest.approx(p_each, abs=0.02)
    lo_g, hi_g = bootstrap_ci(a, b, seed=1)
    lo_e, hi_e = bootstrap_ci(a, b + jitter, seed=1)
    assert lo_g == pytest.approx(lo_e, abs=0.01) and hi_g == pytest.approx(hi_e, abs=0.01)


def test_binary_bootstrap_close_to_scipy() -> None:
    rng = np.random.default_rng(8)
    a = (rng.random(500) < 0.5).astype(float)
    b = (rng.random(500) < 0.6).astype(float)
    low, high = bootstrap_ci(a, b, seed=4)
    ref = stats.bootstrap((a, b), mean_diff, paired=True, vectorized=True,
                          method="percentile", n_resamples=10_000, rng=5)
    assert low == pytest.approx(ref.confidence_interval.low, abs=0.006)
    assert high == pytest.approx(ref.confidence_interval.high, abs=0.006)
