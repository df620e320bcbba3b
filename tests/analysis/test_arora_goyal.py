"""Arora-Goyal checks: the tail bound, the failure law f = c delta^b and the k-tuple rule."""
import numpy as np
import pandas as pd
import pytest

from harness.analysis.ag_bound import binary_entropy, binary_kl, tail_bound, tail_bound_beta
from harness.analysis.ag_failure import failure_law, ktuple_table

from .conftest import pipeline
from .synthetic import make_family


def test_tail_bound_matches_anchor_at_k16_theta005_alpha01():
    assert tail_bound(16, 0.05, 0.1) == pytest.approx(0.182, abs=1e-3)
    beta = tail_bound_beta(16, 0.05, 0.1)
    assert 1.0 < beta < 10.0
    # the root really solves H(theta) = k theta KL(alpha beta || alpha), in nats
    assert binary_entropy(0.05) == pytest.approx(16 * 0.05 * binary_kl(0.1 * beta, 0.1), rel=1e-9)


@pytest.mark.parametrize("k", [4, 16, 64])
def test_tail_bound_is_monotone_in_theta(k):
    bounds = np.array([tail_bound(k, t, 0.1) for t in np.linspace(0.001, 0.999, 400)])
    assert np.all(np.isfinite(bounds))
    assert np.all(np.diff(bounds) >= -1e-12)


def test_tail_bound_without_root_is_nan_not_a_number():
    # k = 1, small theta: H(theta) > theta ln(1/alpha), so no beta in (1, 1/alpha) works
    assert np.isnan(tail_bound(1, 0.01, 0.1))
    assert tail_bound(4, 0.0, 0.1) == 0.0


def _singles(delta, failure, n=2000, chance=0.0, seed=0):
    rng = np.random.default_rng(seed)
    p = chance + (1 - chance) * (1 - failure)
    return pd.DataFrame({"checkpoint_id": [f"c{i}" for i in range(len(delta))], "loss": 0.86 + delta,
                         "excess_loss": delta, "n": float(n), "successes": rng.binomial(n, p).astype(float),
                         "chance": chance})


def test_failure_law_recovers_exponent_with_interval():
    delta = np.geomspace(0.05, 0.6, 8)
    rows = _singles(delta, 0.9 * delta ** 1.5, chance=0.25)
    table, fit = failure_law(rows, n_boot=100, rng=np.random.default_rng(0))
    assert fit["b"] == pytest.approx(1.5, abs=0.1)
    assert fit["c"] == pytest.approx(0.9, rel=0.15)
    assert fit["b_lo"] <= 1.5 <= fit["b_hi"] and fit["b_is_1_plausible"] is False
    assert table["calibrated"][table["is_reference"]].iloc[0] == pytest.approx(
        table["failure"][table["is_reference"]].iloc[0])


def test_failure_law_from_synthetic_records_recovers_exponent():
    failure = lambda k, delta, load: 1.0 - np.minimum(1.0, 0.9 * delta ** 1.5)  # noqa: E731
    records, ck = make_family(failure, seed=1, item_kw=dict(ks=(1,), items_per_skill=200),
                              checkpoint_kw=dict(sizes=np.geomspace(1e5, 1e7, 8)),
                              record_kw=dict(metrics=("mc_accuracy",)))
    state = pipeline(records, ck, n_boot=100)
    _, fit = failure_law(state["competence"], n_boot=100, rng=np.random.default_rng(0), boot=state["boot"])
    assert fit["b"] == pytest.approx(1.5, abs=0.15) and fit["b_lo"] <= 1.5 <= fit["b_hi"]


def test_failure_law_on_linear_data_finds_b_near_one():
    delta = np.geomspace(0.05, 0.6, 8)
    _, fit = failure_law(_singles(delta, 1.2 * delta, seed=1), n_boot=100, rng=np.random.default_rng(1))
    assert fit["b_is_1_plausible"] is True


def test_ktuple_rule_compares_union_and_independence():
    failure = pd.DataFrame({"checkpoint_id": ["c0"], "failure": [0.1]})
    competence = pd.DataFrame({"checkpoint_id": ["c0", "c0"], "mode": "conjunction", "k": [2, 4],
                               "metric": "exact_match", "competence": [0.80, 0.30], "competence_lo": [0.75, 0.25],
                               "competence_hi": [0.85, 0.35]})
    table = ktuple_table(competence, failure)
    np.testing.assert_allclose(table["union"], [0.2, 0.4])
    np.testing.assert_allclose(table["independent"], [1 - 0.9 ** 2, 1 - 0.9 ** 4])
    assert table["within_union"].tolist() == [True, False]
