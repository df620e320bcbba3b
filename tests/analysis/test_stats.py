"""Statistical primitives: smoothing, chance correction, tests and intervals."""
import numpy as np
import pytest
from scipy import stats

from harness.analysis.stats import (above_chance_pvalue, binomial_nll, chance_correct, expanded_t_ci, floor_or_ceiling, holm,
                                    jeffreys, jeffreys_interval, lr_pvalue, mcnemar_exact, percentile_ci, snap_zero,
                                    zero_width)


def test_jeffreys_smoothing_is_posterior_mean_and_keeps_nan():
    assert jeffreys(3, 10) == pytest.approx(3.5 / 11)
    assert jeffreys(0, 0) == pytest.approx(0.5)
    assert np.isnan(jeffreys(np.nan, 10))


def test_chance_correction_rescales_and_clips():
    np.testing.assert_allclose(chance_correct([0.25, 0.625, 1.0, 0.1], 0.25), [0.0, 0.5, 1.0, 0.0])
    assert chance_correct(0.7, 0.0) == pytest.approx(0.7)
    assert np.isnan(chance_correct(0.7, np.nan))
    assert np.isnan(chance_correct(0.7, 1.0))


def test_mcnemar_matches_hand_computation():
    # 7 pairs only A right, 2 only B right: p = 2 * P(X <= 2 | 9, 1/2) = 2 * (1 + 9 + 36) / 512
    assert mcnemar_exact(7, 2) == pytest.approx(92 / 512)
    assert mcnemar_exact(2, 7) == pytest.approx(92 / 512)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 5) == 1.0


def test_holm_matches_hand_computation_and_skips_nan():
    adjusted = holm(np.array([0.01, 0.04, np.nan, 0.03]))
    np.testing.assert_allclose(adjusted[[0, 3, 1]], [0.03, 0.06, 0.06])
    assert np.isnan(adjusted[2])


def test_above_chance_pvalue_is_exact_binomial_tail():
    assert above_chance_pvalue(5, 20, 0.25) == pytest.approx(stats.binom.sf(4, 20, 0.25))
    assert above_chance_pvalue(1, 20, 0.0) == 0.0
    assert above_chance_pvalue(0, 20, 0.0) == 1.0
    assert np.isnan(above_chance_pvalue(2.5, 20, 0.25))


def test_jeffreys_interval_contains_rate_and_has_closed_ends():
    lo, hi = jeffreys_interval(np.array([0, 5, 10]), np.array([10, 10, 10]))
    assert lo[0] == 0.0 and hi[2] == 1.0
    assert lo[1] < 0.5 < hi[1]
    lo, hi = jeffreys_interval(0, 0)
    assert np.isnan(lo) and np.isnan(hi)


def test_binomial_nll_matches_scipy():
    s, n, p = np.array([3.0, 7.0]), np.array([10.0, 9.0]), np.array([0.2, 0.8])
    assert binomial_nll(s, n, p) == pytest.approx(-stats.binom.logpmf([3, 7], [10, 9], p).sum())


def test_percentile_ci_ignores_nan_replicates_until_too_many():
    x = np.r_[np.arange(100.0), np.full(20, np.nan)]
    lo, hi = percentile_ci(x)
    assert lo == pytest.approx(np.percentile(np.arange(100.0), 2.5))
    assert np.isnan(percentile_ci(np.r_[1.0, np.full(9, np.nan)])[0])


def test_lr_pvalue_divides_by_overdispersion_only_when_above_one():
    assert lr_pvalue(12.0, 10.0)[0] == pytest.approx(4.0)
    assert lr_pvalue(12.0, 10.0, dispersion=2.0)[0] == pytest.approx(2.0)
    assert lr_pvalue(12.0, 10.0, dispersion=0.5)[0] == pytest.approx(4.0)


def test_floor_or_ceiling_names_cells_at_chance_or_at_one_everywhere():
    n, g = np.full(3, 100.0), np.full(3, 0.25)
    assert floor_or_ceiling([25.0, 20.0, 25.0], n, g).startswith("competence is 0 (or at chance) everywhere")
    assert floor_or_ceiling([100.0, 100.0, 100.0], n, g).startswith("competence is 1 everywhere")
    assert floor_or_ceiling([25.0, 60.0, 100.0], n, g) is None  # a transition, even if it ends at 1
    assert floor_or_ceiling([25.0, 100.0, 0.0], [100.0, 100.0, 0.0], g) is None  # a cell without counts is ignored


def test_zero_width_interval_needs_two_replicates_and_snap_zero_only_touches_noise():
    assert zero_width(1.98, 1.98, 1.98, n_valid=30) and not zero_width(1.9, 2.1, 2.0, n_valid=30)
    assert not zero_width(1.98, 1.98, 1.98, n_valid=1) and not zero_width(np.nan, np.nan, 1.0, n_valid=30)
    np.testing.assert_array_equal(snap_zero([1.4e-17, -3e-13, 1e-9, -0.2]), [0.0, 0.0, 1e-9, -0.2])


def test_expanded_t_interval_widens_for_few_clusters_and_stays_in_bounds():
    rng = np.random.default_rng(0)
    reps = rng.normal(0.5, 0.05, size=(3, 400))
    sd = reps.std(axis=1, ddof=1)
    lo, hi = expanded_t_ci(np.full(3, 0.5), reps, np.array([8, 200, 1]), bounds=(0.0, 1.0))
    z8 = np.sqrt(8 / 7) * stats.t.ppf(0.975, 7)  # 2.53: the 98.85% normal quantile, not 1.96
    assert hi[0] - 0.5 == pytest.approx(z8 * sd[0])
    assert hi[1] - 0.5 == pytest.approx(stats.norm.ppf(0.975) * sd[1], rel=0.01)
    assert np.isnan(lo[2]) and np.isnan(hi[2])  # one cluster: no interval
    lo, hi = expanded_t_ci(np.array([0.98]), reps[:1] + 0.48, np.array([8]), bounds=(0.0, 1.0))
    assert hi[0] == 1.0 and lo[0] < 0.98
