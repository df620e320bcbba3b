"""Slingshot test, in-context gain and failure kinds: seeded calibration and the NaN-with-reason degradations."""
import numpy as np
import pandas as pd

from benchmarks.calibration.slingshot import shots_rows, simulate, slingshot_verdict
from harness.analysis import analyze
from harness.analysis.failure_kinds import failure_kinds, format_share_of_failures
from harness.analysis.result import AnalysisConfig
from harness.analysis.schema import prepare_records
from harness.analysis.slingshot import inside_seen


def test_slingshot_verdict_holds_size_under_a_true_slingshot_and_detects_a_lag():
    null = [slingshot_verdict(40 + r, a=1.5, n_boot=100) for r in range(12)]
    lag = [slingshot_verdict(90 + r, a=2.5, n_boot=100) for r in range(12)]
    assert sum(v != "consistent with the slingshot" for v in null) <= 1, null
    assert sum(v == "2k lags" for v in lag) >= 8, lag


def test_shots_gain_and_slope_intervals_cover_and_hold_size():
    table = {(r.procedure, r.quantity): r for r in shots_rows(n_reps=6, seed=5)}
    assert table[("shots_gain_interval", "coverage")].estimate >= 0.95  # 0.91 without the binomial floor
    assert table[("shots_slope_interval", "coverage")].estimate >= 0.8
    assert table[("shots_slope_excludes_0", "size")].estimate <= 0.05  # 0.083 without the floor


def _checkpoints(excess: pd.Series) -> pd.DataFrame:
    return pd.DataFrame({"checkpoint_id": excess.index, "params": np.arange(len(excess)) + 10,
                         "ce_nats_sum": (0.84 + excess.to_numpy()) * 1000, "ce_tokens": 1000, "entropy_floor": 0.84})


def test_analyze_reports_shots_gain_and_slingshot_verdict_on_a_family_with_a_shots_axis():
    records, excess = simulate(1, gamma=0.7, shots=(0, 1, 2))
    result = analyze(records, _checkpoints(excess), n_boot=50)
    entry = result.summary["analyses"]
    assert entry["shots"]["status"] == "ok" and entry["slingshot"]["status"] == "ok"
    assert set(result.shots_gain["step"]) == {"0->1", "1->2"}
    assert (result.shots_trend["mean_gain_lo"] > 0).all()  # gamma = 0.7 helps at every k and step
    assert result.slingshot_summary["verdict"].iloc[0] == "consistent with the slingshot"


def test_without_a_shots_axis_or_k_and_2k_the_analyses_are_skipped_with_a_reason_not_zero():
    records, excess = simulate(2, ks=(2, 3))
    result = analyze(records, _checkpoints(excess), n_boot=20)
    entry = result.summary["analyses"]
    assert entry["shots"]["status"] == "skipped" and "0 shots only" in entry["shots"]["reason"]
    assert entry["slingshot"]["status"] == "skipped" and "needs held-out cells at k and 2k" in entry["slingshot"]["reason"]
    assert result.shots_gain.empty and result.slingshot_summary.empty


def test_slingshot_beyond_the_trained_k_is_not_testable_when_format_failures_are_unknown():
    records, excess = simulate(3)
    result = analyze(records, _checkpoints(excess), n_boot=20, config=AnalysisConfig(trained_ks=(1, 2, 3)))
    row = result.slingshot_summary.iloc[0]
    assert row["verdict"].startswith("not testable") and "beyond the trained k" in row["reason"]
    assert np.isnan(row["mean_diff_lo"])


def test_heldout_tuple_inside_a_seen_trained_larger_tuple_counts_as_trained():
    clusters = pd.DataFrame({"k": [2, 2, 3, 4], "split": ["heldout", "heldout", "seen", "seen"],
                             "skill_key": ["a+b", "a+e", "a+b+c", "a+c+d+e"]})
    assert inside_seen(clusters) == {"a+b", "a+e"}
    assert inside_seen(clusters, trained_ks=(1, 2, 3)) == {"a+b"}  # "seen" at untrained k was never trained


def _graded(parts_predicted, stopped, value) -> pd.DataFrame:
    n = len(value)
    return pd.DataFrame({"checkpoint_id": "c", "item_id": [f"i{i}" for i in range(n)], "skills": [("a", "b")] * n,
                         "k": 2, "mode": "chain", "split": "heldout", "metric": "exact_match", "value": value,
                         "chance": 0.0, "parts_total": 2, "parts_predicted": parts_predicted, "stopped": stopped})


def test_failure_kinds_split_wrong_count_and_no_stop_from_wrong_parts():
    frame = _graded([2, 1, 2, 2, 3, -1], [1.0, 1.0, 0.0, 1.0, np.nan, np.nan], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    row = failure_kinds(prepare_records(frame)).iloc[0]
    assert (row["share_none"], row["share_format"], row["share_skill"], row["share_unknown"]) == (1 / 6, 3 / 6, 1 / 6, 1 / 6)
    assert format_share_of_failures(failure_kinds(prepare_records(frame)))[("chain", 2)] == 0.75


def test_failure_kinds_are_nan_with_reason_when_records_predate_parts_predicted():
    frame = _graded([2], [1.0], [0.0]).drop(columns=["parts_predicted", "stopped"])
    row = failure_kinds(prepare_records(frame)).iloc[0]
    assert np.isnan(row["share_format"]) and "predate parts_predicted" in row["reason"]


def test_report_sections_show_the_verdict_the_gain_and_the_failure_shares():
    from harness.report.data import ReportData, checkpoints_for_report
    from harness.report.sections_beyond import failure_kinds_section, shots_section, slingshot_section

    records, excess = simulate(4, gamma=0.7, shots=(0, 1, 2))
    wrong = records["value"] < 1
    records = records.assign(parts_total=records["k"], stopped=1.0,
                             parts_predicted=np.where(wrong & (records.index % 2 == 0), records["k"] - 1, records["k"]))
    ck = _checkpoints(excess)
    result = analyze(records, ck, n_boot=30)
    data = ReportData(run_id="sim", summary=result.summary, tables=result.tables(),
                      checkpoints=checkpoints_for_report(ck, result.excess_loss))
    sling, shots, kinds = (f(data, {}) for f in (slingshot_section, shots_section, failure_kinds_section))
    assert result.slingshot_summary["verdict"].iloc[0] in sling and "not testable" not in sling
    assert "Analysis skipped" not in shots and shots.count('data-col="mean_gain"') >= 4  # 2 k x 2 steps
    assert "format failure" in kinds and "Analysis skipped" not in kinds
    shares = result.failure_kinds[["share_format", "share_skill"]].to_numpy()
    assert np.allclose(shares[:, 0], shares[:, 1], atol=0.15)  # half of the wrong answers miss a part
