"""`analyze` end to end: every analysis runs on a synthetic family, and degenerate inputs give reasons."""
import json

import numpy as np
import pandas as pd
import pytest

from harness.analysis import TABLES, AnalysisResult, analyze
from harness.analysis.result import TABLE_COLUMNS

from .conftest import tiny_records
from .synthetic import make_family


@pytest.fixture(scope="module")
def result(ag_family) -> AnalysisResult:
    records, ck = ag_family
    return analyze(records, ck, n_boot=30)


def test_every_analysis_runs_on_a_synthetic_family(result):
    statuses = {name: entry["status"] for name, entry in result.summary["analyses"].items()}
    assert statuses and all(s == "ok" for s in statuses.values()), statuses
    for name in TABLES:
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
