"""Emergence detection: sharpness, above-chance tests, breakpoint recovery and the mirage check."""
import numpy as np
import pandas as pd
import pytest

from harness.analysis.emergence import (_breakpoint, above_chance_table, bracket_interval, clusters_per_cell,
                                       emergence_table, mirage_table, window_sharpness)

from .conftest import pipeline
from .synthetic import make_family


def test_sharpness_is_window_for_a_line_and_one_for_a_step():
    x = np.linspace(0.0, 1.0, 11)
    assert window_sharpness(x, 1.0 - x) == pytest.approx(0.2)
    assert window_sharpness(x, (x < 0.5).astype(float)) == pytest.approx(1.0)
    assert window_sharpness(x, x) == 0.0  # gets worse as loss falls: no emergence
    assert np.isnan(window_sharpness(x, np.full(11, 0.3)))


def test_above_chance_is_exact_and_holm_corrected_within_a_cell():
    competence = pd.DataFrame({"checkpoint_id": ["a", "b", "c"], "mode": "single", "k": 1, "metric": "mc_accuracy",
                               "successes": [30.0, 45.0, 60.0], "n": 100.0, "chance": 0.25})
    table = above_chance_table(competence)
    assert table["p_holm"].iloc[2] == pytest.approx(3 * table["p_value"].iloc[2])
    assert table["above_chance"].tolist() == [False, True, True]


def _family(**record_kw):
    return make_family(seed=5, item_kw=dict(ks=(1, 4), n_tuples=20, items_per_tuple=10, modes=("conjunction",)),
                       checkpoint_kw=dict(sizes=np.geomspace(2e4, 1e7, 12)), record_kw=record_kw)


def test_breakpoint_recovers_threshold_loss_with_interval():
    eta, E = 1.4, 0.86
    threshold = lambda k, delta, load: -np.expm1(-8.0 * np.maximum(0.0, (eta - E) - delta))  # noqa: E731
    records, ck = make_family(threshold, item_kw=dict(ks=(1,), items_per_skill=60),
                              checkpoint_kw=dict(sizes=np.geomspace(2e4, 1e7, 12)),
                              record_kw=dict(metrics=("exact_match",)))
    _, comp, boot = pipeline(records, ck, n_boot=60)
    above = above_chance_table(comp)
    row = emergence_table(comp, boot, above).iloc[0]
    assert row["breakpoint_loss"] == pytest.approx(eta, abs=0.03)
    assert row["breakpoint_lo"] <= eta + 0.01 and eta - 0.01 <= row["breakpoint_hi"]
    assert row["breakpoint_in_range"]


def test_breakpoint_interval_holds_the_checkpoints_around_the_estimate():
    eta, E = 1.4, 0.86
    threshold = lambda k, delta, load: -np.expm1(-8.0 * np.maximum(0.0, (eta - E) - delta))  # noqa: E731
    records, ck = make_family(threshold, item_kw=dict(ks=(1,), items_per_skill=60),
                              checkpoint_kw=dict(sizes=np.geomspace(2e4, 1e7, 12)),
                              record_kw=dict(metrics=("exact_match",)))
    prepared, table, boot = pipeline(records, ck, n_boot=60)
    above = above_chance_table(table)
    row = emergence_table(table, boot, above, clusters_per_cell(prepared.sums)).iloc[0]
    loss = np.sort(table["loss"].unique())
    below, above_ = loss[loss <= row["breakpoint_loss"]].max(), loss[loss >= row["breakpoint_loss"]].min()
    assert row["breakpoint_lo"] <= below < above_ <= row["breakpoint_hi"]


def test_bracket_interval_widens_only_to_the_neighbouring_checkpoints():
    loss = np.array([0.9, 1.0, 1.2, 1.5])
    assert bracket_interval(1.05, 1.1, 1.08, loss) == (1.0, 1.2)
    assert bracket_interval(0.95, 1.3, 1.08, loss) == (0.95, 1.3)  # already wider: unchanged
    assert bracket_interval(1.55, 1.7, 1.6, loss) == (1.5, 1.7)  # beyond every checkpoint: keeps its end
    lo, hi = bracket_interval(np.nan, np.nan, 1.08, loss)
    assert np.isnan(lo) and np.isnan(hi)


def test_breakpoint_interval_is_expanded_for_few_clusters():
    eta, E = 1.4, 0.86
    threshold = lambda k, delta, load: -np.expm1(-8.0 * np.maximum(0.0, (eta - E) - delta))  # noqa: E731
    records, ck = make_family(threshold, item_kw=dict(ks=(1,), items_per_skill=60),
                              checkpoint_kw=dict(sizes=np.geomspace(2e4, 1e7, 12)),
                              record_kw=dict(metrics=("exact_match",)))
    _, rows, boot = pipeline(records, ck, n_boot=60)
    _, lo8, hi8, _ = _breakpoint(rows, boot, n_clusters=3, bracket=False)
    _, lo, hi, _ = _breakpoint(rows, boot, n_clusters=None, bracket=False)
    assert lo8 <= lo and hi <= hi8 and (hi8 - lo8) > (hi - lo)


def _mirage(records, ck):
    _, comp, boot = pipeline(records, ck, n_boot=60)
    return mirage_table(comp, boot).set_index("k").loc[4]


def test_mirage_when_per_token_probability_is_smooth():
    verdict = _mirage(*_family(per_token=lambda k, delta: np.exp(-0.3 * delta)))
    assert verdict["p_breakpoint"] >= 0.05
    assert verdict["verdict"].startswith("mirage")


def test_jump_survives_when_per_token_probability_jumps():
    verdict = _mirage(*_family(per_token=lambda k, delta: np.where(delta > 0.5, 0.3, 0.995)))
    assert verdict["p_breakpoint"] < 0.05
    assert verdict["verdict"].startswith("jump survives")


def _breakpoint_row(competence_fn):
    records, ck = make_family(competence_fn, item_kw=dict(ks=(1,), items_per_skill=40),
                              checkpoint_kw=dict(sizes=np.geomspace(2e4, 1e7, 10)),
                              record_kw=dict(metrics=("exact_match",)))
    _, comp, boot = pipeline(records, ck, n_boot=20)
    return emergence_table(comp, boot, above_chance_table(comp)).iloc[0]


@pytest.mark.parametrize("competence_fn, expected", [
    (lambda k, delta, load: 1.0 + 0.0 * delta, "competence is 1 everywhere: no breakpoint"),
    # competence grows with the loss (as with a mismeasured loss): eta goes to the top of its search range
    (lambda k, delta, load: 0.1 + 0.3 * delta, "top of its search range"),
])
def test_breakpoint_is_nan_with_reason_when_the_data_do_not_locate_it(competence_fn, expected):
    row = _breakpoint_row(competence_fn)
    assert np.isnan(row["breakpoint_loss"]) and np.isnan(row["breakpoint_lo"]) and np.isnan(row["breakpoint_hi"])
    assert expected in row["reason"]
