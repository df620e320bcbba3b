"""Each competence-curve form recovers its own parameters, and AIC prefers the generating form."""
import numpy as np
import pytest

from harness.analysis.competence import fit_competence_curves
from harness.analysis.curves import CompetenceCurve, threshold_grid

from .conftest import pipeline
from .synthetic import make_family

DELTA = np.geomspace(0.1, 1.3, 12)
E = 0.86
TRUE = {
    "logistic": (lambda d: 1 / (1 + (d / 0.4) ** 5), {"log_delta50": np.log(0.4), "slope": 5.0}),
    "gompertz": (lambda d: np.exp(-3.0 * d ** 1.5), {"log_lambda": np.log(3.0), "gamma": 1.5}),
    "threshold": (lambda d: -np.expm1(-8.0 * np.maximum(0.0, 1.4 - (d + E))),
                  {"eta_loss": 1.4, "log_rate": np.log(8.0)}),
}


def _counts(form, n=4000, chance=0.25, seed=0):
    q = TRUE[form][0](DELTA)
    p = chance + (1 - chance) * q
    s = np.random.default_rng(seed).binomial(n, p).astype(float)
    return s, np.full(len(DELTA), float(n)), np.full(len(DELTA), chance)


@pytest.mark.parametrize("form", ["logistic", "gompertz", "threshold"])
def test_form_recovers_its_parameters(form):
    s, n, g = _counts(form)
    curve = CompetenceCurve(form)
    x = DELTA + E if curve.covariate == "loss" else DELTA
    curve.fit(x, s, n, g)
    for name, value in TRUE[form][1].items():
        assert curve.params_[name] == pytest.approx(value, rel=0.1, abs=0.05), name


@pytest.mark.parametrize("form", ["logistic", "gompertz", "threshold"])
def test_aic_prefers_the_generating_form(form):
    s, n, g = _counts(form, seed=1)
    aic = {}
    for other in ("logistic", "gompertz", "threshold"):
        curve = CompetenceCurve(other)
        aic[other] = curve.fit(DELTA + E if curve.covariate == "loss" else DELTA, s, n, g).aic_
    assert min(aic, key=aic.get) == form


def test_predict_adds_chance_floor():
    s, n, g = _counts("gompertz")
    curve = CompetenceCurve("gompertz").fit(DELTA, s, n, g)
    np.testing.assert_allclose(curve.predict(DELTA, 0.25), 0.25 + 0.75 * curve.predict_competence(DELTA))


def test_threshold_grid_fits_many_replicates_at_once():
    s, n, g = _counts("threshold")
    eta, _ = threshold_grid(DELTA + E, np.stack([s, s]), np.stack([n, n]), np.stack([g, g]))
    assert eta.shape == (2,) and eta[0] == eta[1] == pytest.approx(1.4, abs=0.02)


@pytest.mark.parametrize("form", ["logistic", "gompertz", "threshold"])
def test_fit_on_synthetic_records_recovers_generating_parameters(form):
    q_of_delta = TRUE[form][0]
    records, ck = make_family(lambda k, delta, load: q_of_delta(delta), item_kw=dict(ks=(1,), items_per_skill=250),
                              checkpoint_kw=dict(sizes=np.geomspace(2e4, 1e7, 12)),
                              record_kw=dict(metrics=("mc_accuracy",)))
    params = fit_competence_curves(pipeline(records, ck, n_boot=2)[1])["competence_params"]
    got = params[params["form"] == form].set_index("param")["value"]
    for name, value in TRUE[form][1].items():
        assert got[name] == pytest.approx(value, rel=0.15, abs=0.05), name


@pytest.mark.parametrize("level, expected", [(0.0, "competence is 0 (or at chance) everywhere"),
                                             (1.0, "competence is 1 everywhere")])
def test_cells_at_floor_or_ceiling_everywhere_get_a_reason_not_a_fit(level, expected):
    records, ck = make_family(lambda k, delta, load: level + 0.0 * delta, item_kw=dict(ks=(1,), items_per_skill=20),
                              record_kw=dict(metrics=("exact_match",)))
    out = fit_competence_curves(pipeline(records, ck, n_boot=2)[1])
    fits = out["competence_fits"]
    assert len(fits) == 3 and fits["nll"].isna().all() and fits["reason"].str.startswith(expected).all()
    assert out["competence_params"].empty and out["competence_curves"].empty


@pytest.mark.parametrize("form", ["logistic", "gompertz"])
def test_fit_leaves_no_flat_zero_when_only_the_lowest_loss_checkpoint_is_off_zero(form):
    # a k = 8 cell of the v2 design: 10 of 32 right at the lowest excess loss, none at the 39 others; every
    # start inside the range put q = 1/2 where the data are 0, and the fit stalled at q = 0 everywhere
    # (gompertz log_lambda at its bound 60), so the forecast's interval was [0, 0]
    from benchmarks.calibration.simulate import V2_DELTAS

    x = np.asarray(V2_DELTAS[2:], float)
    s = np.zeros(len(x))
    s[0] = 10.0
    n, g = np.full(len(x), 32.0), np.zeros(len(x))
    curve = CompetenceCurve(form).fit(x, s, n, g)
    assert curve.predict_competence(x[:1])[0] == pytest.approx(10 / 32, abs=0.1)
    assert curve.predict_competence(x[1:]).max() < 0.05
