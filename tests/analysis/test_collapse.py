"""The collapse test tells Arora-Goyal data (a = b) from independent-skill data (a = 1, b != 1)."""
import numpy as np
import pytest

from harness.analysis.collapse import CollapseModel, collapse_test, verdict
from harness.analysis.cor13 import shared_curve_test

from .conftest import pipeline
from .synthetic import ag_competence, independent_competence, make_family

ITEMS = dict(n_tuples=20, items_per_tuple=10, modes=("conjunction",))


def _test(competence_fn, seed):
    records, ck = make_family(competence_fn, seed=seed, item_kw=ITEMS, record_kw=dict(metrics=("exact_match",)))
    _, comp, boot = pipeline(records, ck, n_boot=60)
    return collapse_test(comp, boot, p_shared=shared_curve_test(comp, boot)["p_shared_curve"])


def test_collapse_accepts_a_equals_b_and_rejects_independence_on_ag_data():
    out = _test(ag_competence(lam=2.0, b=2.0), seed=11)
    assert out["p_a_eq_1"] < 0.05  # a cluster-bootstrap p-value: its floor is 2 / (n_boot + 1)
    assert out["p_a_eq_b"] > 0.05
    assert out["a"] == pytest.approx(2.0, abs=0.2) and out["b"] == pytest.approx(2.0, abs=0.2)
    assert out["a_lo"] <= 2.0 <= out["a_hi"] and out["a_minus_b_lo"] <= 0.0 <= out["a_minus_b_hi"]
    assert out["verdict"].startswith("independence (a <= 1) rejected")


def test_collapse_accepts_a_equals_1_and_rejects_ag_on_independent_data():
    out = _test(independent_competence(lam=2.0, b=2.0), seed=12)
    assert out["p_a_eq_b"] < 0.05
    assert out["p_a_eq_1"] > 0.05
    assert out["a"] == pytest.approx(1.0, abs=0.15) and out["b"] == pytest.approx(2.0, abs=0.2)
    assert out["a_lo"] <= 1.0 <= out["a_hi"]
    assert out["verdict"].startswith("Arora-Goyal collapse (a=b) rejected")


def test_a_equals_b_is_rejected_only_when_the_shared_curve_test_rejects_too():
    assert verdict(0.01, 0.5, p_shared=0.01).startswith("Arora-Goyal collapse (a=b) rejected")
    assert verdict(0.01, 0.5, p_shared=0.30).startswith("neither a=b nor independence")
    assert verdict(0.01, 0.01, p_shared=0.30).startswith("independence (a <= 1) rejected")
    assert verdict(0.01, 0.5).startswith("neither")  # the shared-curve test could not run: a = b stands
    assert verdict(0.30, 0.5, p_shared=0.01).startswith("neither")  # the parametric test must reject as well


def test_collapse_model_recovers_exact_parameters_from_expected_counts():
    k = np.repeat([1.0, 2.0, 3.0, 4.0], 6)
    delta = np.tile(np.geomspace(0.1, 0.8, 6), 4)
    q = np.exp(-1.5 * k ** 1.3 * delta ** 1.8)
    n = np.full(len(k), 1e5)
    model = CollapseModel().fit(k, delta, q * n, n, np.zeros(len(k)))
    assert (np.exp(model.log_lambda_), model.a_, model.b_) == pytest.approx((1.5, 1.3, 1.8), rel=1e-3)
    restricted = CollapseModel("a=1").fit(k, delta, q * n, n, np.zeros(len(k)))
    assert restricted.a_ == 1.0 and restricted.nll_ > model.nll_


def test_collapse_needs_two_k_values():
    records, ck = make_family(item_kw=dict(ks=(1,)), record_kw=dict(metrics=("exact_match",)))
    _, comp, boot = pipeline(records, ck, n_boot=5)
    assert "need at least 2 values of k" in collapse_test(comp, boot)["reason"]


@pytest.mark.parametrize("competence_fn, expected", [
    (lambda k, delta, load: 0.0 * delta, "competence is 0 (or at chance) everywhere: nothing to collapse"),
    (lambda k, delta, load: 1.0 + 0.0 * delta, "competence is 1 everywhere: nothing to collapse"),
    (lambda k, delta, load: np.where(k == 1, 0.5, 0.0) + 0.0 * delta,
     "composite (k > 1) competence is 0 (or at chance) everywhere: nothing to collapse"),
])
def test_collapse_is_skipped_when_there_is_nothing_to_collapse(competence_fn, expected):
    records, ck = make_family(competence_fn, item_kw=dict(ks=(1, 2, 3), n_tuples=6, items_per_tuple=4,
                                                          items_per_skill=10, modes=("conjunction",)),
                              record_kw=dict(metrics=("exact_match",)))
    _, comp, boot = pipeline(records, ck, n_boot=10)
    out = collapse_test(comp, boot)
    assert out["reason"] == expected
    assert all(np.isnan(out.get(key, np.nan)) for key in ("a", "a_lo", "a_hi", "b", "dispersion", "p_a_eq_b"))


def test_collapse_exponent_recovers_the_k_scaling_of_one_shared_curve_of_any_form():
    from harness.analysis.collapse_exponent import best_exponents

    for deltas, resolution in ((np.geomspace(0.05, 0.9, 8), 0.3), (np.geomspace(0.05, 0.9, 40), 0.05)):
        log_d = np.log(np.tile(deltas, 4))
        k = np.repeat([1.0, 2.0, 3.0, 4.0], len(deltas))
        for c in (0.6, 1.0, 1.4):
            x = log_d + c * np.log(k)
            q = 1.0 / (1.0 + np.exp(3.0 * (x + 1.0)))  # a logistic F, not the Weibull form
            low, high = best_exponents(log_d, np.log(k), q, np.full(len(k), 20.0))
            assert low <= c <= high and high - low < resolution, (c, low, high)


def test_collapse_exponent_interval_holds_1_on_ag_data_and_1_over_b_on_independent_data():
    from harness.analysis.collapse_exponent import collapse_exponent

    for competence_fn, seed, truth in ((ag_competence(lam=2.0, b=2.0), 11, 1.0),
                                       (independent_competence(lam=2.0, b=2.0), 12, 0.5)):
        records, ck = make_family(competence_fn, seed=seed, item_kw=ITEMS, record_kw=dict(metrics=("exact_match",)))
        _, comp, boot = pipeline(records, ck, n_boot=60)
        out = collapse_exponent(comp, boot)
        assert out["c_shared_reason"] is None
        assert out["c_shared_lo"] <= truth <= out["c_shared_hi"], (truth, out)
        assert out["c_shared_hi"] - out["c_shared_lo"] < 0.4


def test_collapse_exponent_of_flat_competence_is_nan_with_its_reason():
    from harness.analysis.collapse_exponent import collapse_exponent

    records, ck = make_family(lambda k, delta, load: np.zeros_like(delta * load), seed=3, item_kw=ITEMS,
                              record_kw=dict(metrics=("exact_match",)))
    _, comp, boot = pipeline(records, ck, n_boot=20)
    out = collapse_exponent(comp, boot)
    assert np.isnan(out["c_shared"]) and "flat" in out["c_shared_reason"]
