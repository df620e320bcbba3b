"""Properties of the calibrated verdicts: bootstrap p-values, trained k from the family manifest, the linear-law
wording, Cor. 13 and the shared-curve test, and the breakpoint test's invariance to added high-loss checkpoints."""
from __future__ import annotations

import json

import numpy as np
import pytest

from harness.analysis.ag_failure import linear_law_reading
from harness.analysis.emergence import breakpoint_test
from harness.analysis.stats import bootstrap_pvalue, percentile_ci


def test_bootstrap_pvalue_rejects_exactly_when_the_null_is_outside_the_percentile_interval():
    reps = np.random.default_rng(0).normal(0.3, 0.1, 999)
    lo, hi = percentile_ci(reps)
    for null in (lo - 0.01, lo + 0.01, 0.3, hi - 0.01, hi + 0.01):
        assert (bootstrap_pvalue(reps, null) < 0.05) == (not lo <= null <= hi)
    assert 0.0 < bootstrap_pvalue(reps, 5.0) <= 2 / 1000


def test_one_sided_bootstrap_pvalue_rejects_exactly_when_the_null_is_below_the_lower_5th_percentile():
    reps = np.random.default_rng(1).normal(1.3, 0.1, 999)
    lower = np.percentile(reps, 5.0)
    for null in (lower - 0.01, lower + 0.01, 1.3, 1.6):
        assert (bootstrap_pvalue(reps, null, alternative="greater") < 0.05) == (null < lower)
    assert bootstrap_pvalue(reps, 1.7, alternative="greater") > 0.99  # far above: no evidence for "greater"
    assert bootstrap_pvalue(reps, 1.7, alternative="less") < 0.01


def test_bootstrap_pvalue_is_nan_when_most_replicates_failed():
    assert np.isnan(bootstrap_pvalue(np.r_[np.full(60, np.nan), np.zeros(40)], 1.0))


def test_linear_law_reading_says_the_data_disagree_when_b_excludes_one():
    assert linear_law_reading(3.4, 2.6, 5.0).startswith("the data disagree with A&G's linear law")
    assert linear_law_reading(1.1, 0.8, 1.4).startswith("consistent with A&G's linear law")
    assert linear_law_reading(1.1, np.nan, np.nan) is None


def test_trained_k_are_read_from_the_family_manifest(tmp_path):
    from harness.analysis.io import family_trained_ks
    from harness.zoo.family import family_path

    (tmp_path / "manifest.json").write_text(json.dumps({"config": {"family": [str(family_path("default"))]}}))
    assert family_trained_ks(tmp_path) == (1, 2, 3, 4)
    (tmp_path / "manifest.json").write_text(json.dumps({"config": {"family": ["/models/some-checkpoint"]}}))
    assert family_trained_ks(tmp_path) is None


def _curve(loss, kind):
    if kind == "linear":  # in both families: only the null distribution keeps the threshold from winning on noise
        return -2.0 - 4.0 * loss
    return -6.0 * np.exp(1.5 * (loss - 1.64)) if kind == "smooth" else -6.0 + 8.0 * np.maximum(0.0, 1.3 - loss)


@pytest.mark.parametrize("kind, breaks", [("smooth", False), ("linear", False), ("hinge", True)])
def test_breakpoint_test_verdict_does_not_change_when_high_loss_checkpoints_are_added(kind, breaks):
    rng = np.random.default_rng(4)
    for loss in (np.linspace(0.9, 1.7, 14), np.r_[np.linspace(0.9, 1.7, 14), np.linspace(1.9, 3.0, 6)]):
        y = _curve(loss, kind)
        noise = rng.normal(0.0, 0.05, (len(loss), 200))  # bootstrap deviations of the means
        p = breakpoint_test(loss, y + noise[:, 0], y[:, None] + noise[:, 0:1] + noise[:, 1:] * 1.0)["p_breakpoint"]
        assert (p < 0.05) == breaks
