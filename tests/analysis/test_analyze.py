"""`analyze` end to end: every analysis runs on a synthetic family, and degenerate inputs give reasons."""
import json

import numpy as np
import pandas as pd
import pytest

from harness.analysis import TABLES, AnalysisResult, analyze
from harness.analysis.result import TABLE_COLUMNS, missing_values, why_missing

from .conftest import tiny_records
from .synthetic import ag_competence, make_checkpoints, make_family, make_items, make_records


@pytest.fixture(scope="module")
def result(ag_family) -> AnalysisResult:
    records, ck = ag_family
    return analyze(records, ck, n_boot=30)


V2_DESIGN = {"failure_kinds": ("failure_kinds",), "slingshot": ("slingshot", "slingshot_summary"),
             "shots": ("shots_gain", "shots_trend")}
"""Analyses that need the v2 family's design (parts_predicted, held-out k and 2k never inside a seen tuple, a
shots axis), which this v1-like family lacks: they must say so (test_slingshot_shots_failures runs them)."""


def test_every_analysis_runs_on_a_synthetic_family(result):
    statuses = {name: entry["status"] for name, entry in result.summary["analyses"].items()}
    assert statuses and all(s == "ok" for n, s in statuses.items() if n not in V2_DESIGN), statuses
    assert all(result.summary["analyses"][n]["reason"].startswith("not ") for n in V2_DESIGN)
    for name in set(TABLES) - {t for tables in V2_DESIGN.values() for t in tables} | {"failure_kinds"}:
        table = getattr(result, name)
        assert len(table) > 0 and list(table.columns) == list(TABLE_COLUMNS[name]), name


def test_tables_are_parquet_writable(result, tmp_path):
    for name, table in result.tables().items():
        table.to_parquet(tmp_path / f"{name}.parquet")
        assert len(pd.read_parquet(tmp_path / f"{name}.parquet")) == len(table)


def test_summary_is_json_serializable_with_nan_as_none_and_reason(result):
    text = json.dumps(result.summary, allow_nan=False)
    scaling = json.loads(text)["analyses"]["scaling"]
    assert all("B" not in fit for fit in scaling["fits"] if fit["form"] == "N")  # no D term in L(N)
    assert result.summary["n_failed_records"] > 0


def test_analysis_is_deterministic_given_seed(ag_family):
    records, ck = ag_family
    small = records[records["metric"] == "exact_match"]
    a, b = analyze(small, ck, n_boot=10, seed=1), analyze(small, ck, n_boot=10, seed=1)
    pd.testing.assert_frame_equal(a.product_rule, b.product_rule)
    c = analyze(small, ck, n_boot=10, seed=2)
    assert not np.allclose(a.product_rule["ratio_lo"], c.product_rule["ratio_lo"], equal_nan=True)


def test_fitted_E_is_used_when_floor_unknown():
    records, ck = make_family(checkpoint_kw=dict(floor_known=False, loss_noise=0.001),
                              item_kw=dict(ks=(1, 2), n_tuples=6, items_per_tuple=4),
                              record_kw=dict(metrics=("exact_match",)))
    out = analyze(records, ck, n_boot=30)
    assert out.summary["analyses"]["excess_loss"]["source"] == "fitted E"
    assert list(out.scaling["variant"]) == ["free_E"] and list(out.scaling["form"]) == ["N"]
    assert out.excess_loss["excess_lo"].notna().any()


@pytest.mark.parametrize("case", ["one_checkpoint", "singles_only", "all_nan", "no_known_checkpoint"])
def test_degenerate_inputs_give_reasons_not_errors_or_zeros(case):
    records, ck = make_family(item_kw=dict(ks=(1, 2), n_tuples=4, items_per_tuple=3, items_per_skill=5),
                              record_kw=dict(metrics=("exact_match", "gold_logprob")))
    if case == "one_checkpoint":
        ck = ck.iloc[:1]
    elif case == "singles_only":
        records = records[records["k"] == 1]
    elif case == "all_nan":
        records = records.assign(value=np.nan, error="timeout")
    else:
        records = records.assign(checkpoint_id="unknown")
    out = analyze(records, ck, n_boot=5)
    entries = out.summary["analyses"].values()
    assert all(e["status"] in ("ok", "skipped") for e in entries), out.summary["analyses"]
    assert any(e["status"] == "skipped" and e["reason"] for e in entries)
    json.dumps(out.summary, allow_nan=False)
    assert all(list(t.columns) == list(TABLE_COLUMNS[name]) for name, t in out.tables().items())
    if case == "all_nan":
        assert out.competence["mean"].isna().all() and not out.competence["n"].any()


def test_missing_required_columns_raise():
    records = tiny_records({"c0": [1.0]}).drop(columns=["value"])
    with pytest.raises(ValueError, match="value"):
        analyze(records, pd.DataFrame({"checkpoint_id": ["c0"], "params": [1], "ce_nats_sum": [1.0], "ce_tokens": [1]}))


def _nd_family(n_sizes: int, floor_known: bool = True, rising: bool = False):
    """Checkpoints of n_sizes sizes x 3 token counts, L = E + A N^-alpha + B D^-beta (or rising with N)."""
    sizes, tokens = np.geomspace(2e4, 1e6, n_sizes), np.array([1e6, 4e6, 1.6e7])
    ck = make_checkpoints(sizes=np.repeat(sizes, 3), floor_known=floor_known)
    n, d = ck["params"].to_numpy(float), np.tile(tokens, n_sizes)
    loss = 0.86 + (2.0 * n ** 0.05 if rising else 40.0 * n ** -0.35) + 300.0 * d ** -0.4
    ck = ck.assign(checkpoint_id=[f"ck{i:02d}" for i in range(len(ck))], tokens_seen=d, ce_nats_sum=loss * 200_000,
                   true_excess=loss - 0.86)
    items = make_items(ks=(1, 2), n_tuples=4, items_per_tuple=3, items_per_skill=4)
    return make_records(ck, items, ag_competence(lam=1.0), metrics=("exact_match",)), ck


@pytest.mark.parametrize("floor_known", [True, False])
def test_summary_names_the_E_the_excess_loss_actually_uses(floor_known):
    records, ck = _nd_family(4, floor_known=floor_known)
    out = analyze(records, ck, n_boot=10)
    used, source = out.summary["analyses"]["scaling"]["E_for_excess"], out.excess_loss["source"].iloc[0]
    assert source == ("known floor" if floor_known else "fitted E")
    assert used.startswith("known entropy floor") if floor_known else used.startswith("free_E fit")


def test_unidentified_free_E_is_never_the_excess_loss_E():
    records, ck = _nd_family(4, floor_known=False, rising=True)
    out = analyze(records, ck, n_boot=10)
    free = out.scaling[out.scaling["variant"] == "free_E"]
    assert free["E"].isna().all() and free["reason"].str.contains("not identified").all()
    assert out.summary["analyses"]["scaling"]["E_for_excess"].startswith("none")
    assert out.summary["analyses"]["excess_loss"]["source"] == "unavailable"
    fits = out.summary["analyses"]["scaling"]["fits"]
    assert why_missing(fits[0])["E"] == fits[0]["reason"]  # the fit itself says why its E is missing


def test_missing_map_lists_only_numbers_never_absent_text():
    # 3 sizes: L(N) cannot be fitted (a reason) while L(N, D) can (no reason): pandas stores the None as NaN
    records, ck = _nd_family(3)
    out = analyze(records, ck, n_boot=10)
    scaling = out.summary["analyses"]["scaling"]
    assert any(f["reason"] for f in scaling["fits"]) and any(f["reason"] is None for f in scaling["fits"])
    for entry in out.summary["analyses"].values():
        assert not [k for k, _ in missing_values(entry) if k.endswith(("reason", "at_bound", "verdict"))], entry


def test_competence_curves_use_the_fewest_shots_when_a_suite_has_a_shots_axis(ag_family):
    records, checkpoints = ag_family
    more_shots = records.assign(n_shots=2, item_id=records["item_id"] + "-2shot",
                                value=np.where(records["value"].notna(), 1.0, np.nan))
    plain = analyze(records, checkpoints, n_boot=20)
    with_axis = analyze(pd.concat([records, more_shots], ignore_index=True), checkpoints, n_boot=20)
    pd.testing.assert_frame_equal(plain.competence, with_axis.competence)
    assert with_axis.summary["shot_counts"] == [0, 2]


def test_seen_heldout_caveat_is_given_only_when_held_out_tuples_sit_inside_seen_larger_ones(ag_family):
    from harness.analysis.analyze import prepare
    from harness.analysis.result import AnalysisConfig
    from harness.analysis.slingshot import inside_seen
    from harness.records import skill_set_key

    records, checkpoints = ag_family
    nested = inside_seen(prepare(records, checkpoints, 0, 5, AnalysisConfig()).clusters)
    assert nested, "the synthetic family must have held-out tuples inside seen larger ones for this test"
    keys = records["skills"].map(skill_set_key)
    closed = records[~keys.isin(nested)]
    caveat = lambda recs: analyze(recs, checkpoints, n_boot=5).summary["analyses"]["seen_heldout"]["caveat"]  # noqa: E731
    assert caveat(records) and "inside seen" in caveat(records)
    assert caveat(closed) is None
