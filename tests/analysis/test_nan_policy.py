"""A failed record (value NaN) is excluded and counted; it never becomes a 0 in any aggregate."""
import numpy as np
import pandas as pd

from harness.analysis import analyze
from harness.analysis.bootstrap import assign_clusters
from harness.analysis.cluster_sums import cell_table, cluster_sums
from harness.analysis.schema import prepare_records

from .conftest import tiny_records
from .synthetic import make_checkpoints


def _cells(records):
    prepared = prepare_records(records)
    _, codes = assign_clusters(prepared)
    return cell_table(cluster_sums(prepared, codes), ["checkpoint_id", "mode", "k", "metric"])


def test_accuracy_uses_scored_items_and_counts_failures():
    cells = _cells(tiny_records({"c0": [1.0, 0.0, np.nan, 1.0]}))
    row = cells.iloc[0]
    assert row["n"] == 3 and row["n_failed"] == 1
    assert row["mean"] == 2 / 3


def test_all_failed_cell_is_nan_with_reason_not_zero():
    cells = _cells(tiny_records({"c0": [np.nan, np.nan, np.nan]}))
    row = cells.iloc[0]
    assert np.isnan(row["mean"]) and np.isnan(row["competence"])
    assert row["n"] == 0 and row["n_failed"] == 3
    assert "3 records failed" in row["reason"]


def test_analyze_keeps_a_fully_failed_checkpoint_nan_everywhere():
    ck = make_checkpoints(sizes=(2e4, 1e5, 1e6, 1e7))
    values = {c: [1.0, 0.0, 1.0, 1.0] for c in ck["checkpoint_id"][:3]}
    values[ck["checkpoint_id"].iloc[3]] = [np.nan] * 4
    records = pd.concat([tiny_records(values, skills=s) for s in ("rev", "rot")], ignore_index=True)
    records["item_id"] = records["item_id"] + records["skills"]
    result = analyze(records, ck, n_boot=20)
    failed = result.competence[result.competence["checkpoint_id"] == ck["checkpoint_id"].iloc[3]]
    assert failed["n"].eq(0).all() and failed["mean"].isna().all() and failed["competence"].isna().all()
    assert failed["n_failed"].eq(8).all()
    assert result.above_chance.loc[result.above_chance["checkpoint_id"] == ck["checkpoint_id"].iloc[3],
                                   "p_value"].isna().all()
    assert result.summary["n_failed_records"] == 8
    assert result.summary["failed_by_error"] == {"parse failure": 8}


def test_failed_records_do_not_move_the_product_rule(ag_family):
    records, ck = ag_family
    clean = records.dropna(subset=["value"])
    a, b = analyze(records, ck, n_boot=10), analyze(clean, ck, n_boot=10)
    cols = ["observed", "predicted", "ratio", "n_items"]
    pd.testing.assert_frame_equal(a.product_rule[cols], b.product_rule[cols])
