"""Largest composable k: interpolation, censoring, and its log-log scaling with excess loss."""
import numpy as np
import pytest

from harness.analysis.composable import composable_scaling, composable_table, crossing_k

from .conftest import pipeline
from .synthetic import ag_competence, independent_competence, make_family


def test_crossing_interpolates_log_competence_between_k():
    k_star, censored = crossing_k(np.array([1, 2, 3, 4]), np.array([0.9, 0.7, 0.4, 0.2]), 0.5)
    expected = 2 + (np.log(0.5) - np.log(0.7)) / (np.log(0.4) - np.log(0.7))
    assert censored is None and k_star == pytest.approx(expected)


def test_crossing_uses_non_increasing_envelope_and_censors():
    assert crossing_k(np.array([1, 2, 3]), np.array([0.9, 0.4, 0.6]), 0.5)[0] < 2.0
    assert crossing_k(np.array([1, 2]), np.array([0.9, 0.8]), 0.5) == (pytest.approx(np.nan, nan_ok=True), "above")
    assert crossing_k(np.array([1, 2]), np.array([0.3, 0.1]), 0.5)[1] == "below"


def _slope(competence_fn, sizes):
    records, ck = make_family(competence_fn, checkpoint_kw=dict(sizes=sizes), record_kw=dict(metrics=("exact_match",)),
                              item_kw=dict(n_tuples=16, items_per_tuple=12, items_per_skill=80, modes=("conjunction",)))
    table = composable_table(pipeline(records, ck, n_boot=5)[1])
    return composable_scaling(table, n_boot=100, rng=np.random.default_rng(0)).iloc[0]


def test_k_star_scales_as_inverse_excess_loss_under_ag():
    row = _slope(ag_competence(lam=2.0, b=2.0), np.geomspace(2e5, 8e6, 8))
    assert row["n_points"] >= 5
    assert row["slope"] == pytest.approx(-1.0, abs=0.15)
    assert row["slope_lo"] > -1.5


def test_k_star_scales_as_delta_to_minus_b_under_independence():
    row = _slope(independent_competence(lam=1.0, b=2.0), np.geomspace(7e4, 5e5, 8))
    assert row["n_points"] >= 5
    assert row["slope"] == pytest.approx(-2.0, abs=0.3)
    assert row["slope_hi"] < -1.5
