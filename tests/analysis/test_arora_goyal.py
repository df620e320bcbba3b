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
    _, comp, boot = pipeline(records, ck, n_boot=100)
    _, fit = failure_law(comp, n_boot=100, rng=np.random.default_rng(0), boot=boot)
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


def test_failure_law_fit_never_pins_failure_at_1_where_items_succeed():
    # saturating failure 1 - exp(-2 delta^2): the least-squares start lands where c delta^b >= 1 at the worst
    # checkpoint, where the likelihood is flat; the fit must leave it (an observed success has probability 0 there)
    delta = np.geomspace(0.14, 1.25, 8)
    rows = _singles(delta, 1.0 - np.exp(-2.0 * delta ** 2), n=400, seed=3)
    table, fit = failure_law(rows, n_boot=30, rng=np.random.default_rng(0))
    assert fit["reason"] is None
    has_success = rows["successes"].to_numpy() > 0
    assert (table["fitted"].to_numpy()[has_success] < 1.0).all()


@pytest.mark.parametrize("failure, expected", [
    # no transition: failure ~0.86, drifting up as the excess loss falls (as with a mismeasured loss)
    (np.linspace(0.92, 0.80, 8), "b at its bound 0"),
    (np.ones(8), "competence is 0 (or at chance) everywhere"),
    (np.zeros(8), "competence is 1 everywhere"),
])
def test_failure_law_without_a_transition_is_nan_with_a_reason(failure, expected):
    delta = np.geomspace(0.9, 1.5, 8)
    table, fit = failure_law(_singles(delta, failure, n=400, seed=4), n_boot=30, rng=np.random.default_rng(0))
    assert expected in fit["reason"]
    assert all(np.isnan(fit.get(key, np.nan)) for key in ("c", "b", "b_lo", "b_hi", "c_reference"))
    assert table["fitted"].isna().all() and table["failure"].notna().all()  # observed failures are still shown


def test_vacuous_tail_bound_cells_are_marked_and_left_out_of_the_fraction(ag_family):
    from harness.analysis import pipeline_steps as steps

    records, ck = ag_family
    p, comp, _ = pipeline(records[records["metric"] == "exact_match"], ck, n_boot=5)
    tables, summary = steps.ag_tail_bound(comp, p.sums, p.clusters, p.config)
    table = tables["ag_tail_bound"]
    at_one = table["theta"] == 1.0
    clipped = (table["bound"] >= 1.0) & ~at_one
    assert at_one.any() and clipped.any() and (table["bound"] < 1.0).any()
    assert (table.loc[at_one, "reason"] == "vacuous: failure rate 1").all()
    assert table.loc[at_one | clipped, "holds"].isna().all() and table.loc[at_one | clipped, "frac_inside"].isna().all()
    tested = table["holds"].dropna()
    assert summary["n_cells_tested"] == len(tested) == int((table["bound"] < 1.0).sum())
    assert summary["fraction_holds"] == pytest.approx(tested.astype(bool).mean())
