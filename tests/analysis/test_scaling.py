"""The Hoffmann-style scaling-law fit recovers E, A, alpha (and B, beta) from synthetic losses."""
import numpy as np
import pytest

from harness.analysis.excess import excess_loss_table, fit_scaling
from harness.analysis.scaling import ScalingLaw, bootstrap_scaling
from harness.analysis.schema import prepare_checkpoints

from .synthetic import make_checkpoints

N = np.geomspace(2e4, 2e7, 8)
E, A, ALPHA = 0.86, 40.0, 0.35


def test_noiseless_fit_recovers_E_A_alpha():
    law = ScalingLaw().fit(N, E + A * N ** -ALPHA)
    assert law.E_ == pytest.approx(E, rel=1e-6)
    assert law.A_ == pytest.approx(A, rel=1e-5)
    assert law.alpha_ == pytest.approx(ALPHA, rel=1e-6)
    np.testing.assert_allclose(law.predict(N), E + A * N ** -ALPHA, rtol=1e-8)


def test_noisy_fit_recovers_parameters_and_bootstrap_interval_covers_them():
    rng = np.random.default_rng(3)
    loss = (E + A * N ** -ALPHA) * np.exp(rng.normal(0.0, 0.003, len(N)))
    law = ScalingLaw().fit(N, loss)
    assert law.E_ == pytest.approx(E, abs=0.03)
    assert law.alpha_ == pytest.approx(ALPHA, abs=0.03)
    boot = bootstrap_scaling(law, N, loss, None, 100, np.random.default_rng(0))
    lo, hi = np.nanpercentile(boot[:, 0], [2.5, 97.5])
    assert lo <= E <= hi
    assert lo < hi


def test_fixed_E_fits_only_A_and_alpha():
    rng = np.random.default_rng(4)
    loss = (E + A * N ** -ALPHA) * np.exp(rng.normal(0.0, 0.003, len(N)))
    law = ScalingLaw(fixed_E=E).fit(N, loss)
    assert law.E_ == E
    assert law.param_names_ == ("log_A", "alpha")
    assert law.alpha_ == pytest.approx(ALPHA, abs=0.01)


def test_two_variable_law_recovers_B_and_beta():
    n = np.repeat(np.geomspace(2e4, 2e6, 4), 3)
    d = np.tile([1e6, 3e6, 1e7], 4)
    law = ScalingLaw().fit(n, E + A * n ** -ALPHA + 300.0 * d ** -0.4, d)
    assert (law.E_, law.alpha_, law.B_, law.beta_) == pytest.approx((E, ALPHA, 300.0, 0.4), rel=1e-4)


def test_scaling_reports_fitted_E_against_known_floor_and_excess_is_exact():
    ck = prepare_checkpoints(make_checkpoints(loss_noise=0.002, seed=1))
    row, boot = fit_scaling(ck, n_column="params", fixed_E=None, n_boot=50, rng=np.random.default_rng(0))
    assert row["E"] == pytest.approx(0.86, abs=0.05) and boot.shape == (50, 5)
    table = excess_loss_table(ck, row["E"], boot[:, 0], "known floor")
    np.testing.assert_allclose(table["excess_loss"], ck["loss"] - 0.86)
    assert (table["excess_lo"] == table["excess_hi"]).all()


def test_too_few_checkpoints_give_a_reason_not_a_fit():
    ck = prepare_checkpoints(make_checkpoints(sizes=(1e4, 1e5, 1e6)))
    row, boot = fit_scaling(ck, n_column="params", fixed_E=None, n_boot=10, rng=np.random.default_rng(0))
    assert boot is None and "needs 4" in row["reason"]


def test_fitted_E_excess_loss_has_interval_and_flags_loss_below_E():
    ck = prepare_checkpoints(make_checkpoints(sizes=(1e4, 1e5, 1e6)))
    table = excess_loss_table(ck, 0.9, np.array([0.85, 0.88, 0.9, 0.92]), "fitted E")
    assert (table["excess_lo"] <= table["excess_loss"]).all() and (table["excess_loss"] <= table["excess_hi"]).all()
    below = excess_loss_table(ck, 10.0, None, "fitted E")
    assert below["excess_loss"].isna().all() and below["reason"].str.contains("below E").all()


def test_free_E_fit_with_alpha_on_its_bound_reports_no_E():
    # the loss rises with N (as when cross-entropy is mismeasured): alpha ends at its bound 0
    ck = prepare_checkpoints(make_checkpoints(sizes=(2e4, 6e4, 1.5e5, 4e5, 1e6), A=-2.0, alpha=0.1, seed=2))
    row, _ = fit_scaling(ck, n_column="params", fixed_E=None, n_boot=20, rng=np.random.default_rng(0))
    assert "alpha" in row["at_bound"]
    assert np.isnan(row["E"]) and np.isnan(row["E_lo"]) and np.isnan(row["E_hi"])
    assert "E not identified" in row["reason"] and np.isfinite(row["alpha"])
    fixed, _ = fit_scaling(ck, n_column="params", fixed_E=0.86, n_boot=20, rng=np.random.default_rng(0))
    assert fixed["E"] == 0.86 and fixed["reason"] is None  # a known E stays; only the bound is flagged


def test_checkpoint_without_loss_gets_the_cross_entropy_reason_not_E_unavailable():
    ck = make_checkpoints(sizes=(1e4, 1e5, 1e6)).assign(ce_error=None)
    ck.loc[1, ["ce_nats_sum", "ce_tokens"]] = np.nan
    ck.loc[1, "ce_error"] = "CUDA out of memory"
    table = excess_loss_table(prepare_checkpoints(ck), np.nan, None, "known floor")
    assert np.isnan(table["excess_loss"].iloc[1])
    assert table["reason"].iloc[1] == "no loss: its cross-entropy failed (CUDA out of memory)"
    assert table["reason"].iloc[[0, 2]].isna().all()
