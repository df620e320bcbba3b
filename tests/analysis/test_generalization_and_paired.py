"""Seen vs held-out gap with a clustered interval, and the paired comparison of two checkpoints."""
import numpy as np
import pandas as pd
import pytest

from harness.analysis.generalization import seen_heldout_table
from harness.analysis.paired import adjust_pvalues, paired_comparison, sign_flip_pvalue

from .conftest import pipeline, tiny_records
from .synthetic import ag_competence, make_checkpoints, make_family

ITEMS = dict(ks=(1, 2), n_tuples=24, items_per_tuple=12, modes=("conjunction",))


def _gap_table(records, ck):
    p, _, _ = pipeline(records, ck, n_boot=100)
    table = seen_heldout_table(p.sums, p.weights)
    return table[(table["metric"] == "exact_match")]


def test_no_gap_when_splits_share_one_competence():
    records, ck = make_family(ag_competence(lam=1.0), seed=2, item_kw=ITEMS, record_kw=dict(metrics=("exact_match",)))
    table = _gap_table(records, ck).dropna(subset=["gap_lo"])
    covered = (table["gap_lo"] <= 0) & (0 <= table["gap_hi"])
    assert len(table) >= 6 and covered.mean() >= 0.8


def test_gap_detected_when_held_out_items_are_harder():
    records, ck = make_family(ag_competence(lam=1.0), seed=2, item_kw=ITEMS, record_kw=dict(metrics=("exact_match",)))
    rng = np.random.default_rng(0)
    hit = (records["split"] == "heldout") & (records["value"] == 1.0) & (rng.random(len(records)) < 0.5)
    records.loc[hit, "value"] = 0.0
    table = _gap_table(records, ck)
    strong = table[table["seen"] > 0.4]
    assert len(strong) >= 3 and (strong["gap_lo"] > 0).all()


def _pair_records():
    # A right / B wrong on 7 items, B right / A wrong on 2, both right on 3, both wrong on 4, one failed
    a = [1.0] * 7 + [0.0] * 2 + [1.0] * 3 + [0.0] * 4 + [np.nan]
    b = [0.0] * 7 + [1.0] * 2 + [1.0] * 3 + [0.0] * 4 + [1.0]
    records = tiny_records({"A": a, "B": b}, skills="rev+sft", k=2, mode="chain", split="seen")
    skills = ["rev+sft", "rev+mir", "sft+mir", "mir+rot"]
    records["skills"] = [skills[i % 4] for i in range(len(records))]
    return records


def test_paired_comparison_counts_discordance_and_mean_difference():
    row = paired_comparison(_pair_records(), "A", "B", n_boot=200).iloc[0]
    assert row["n_pairs"] == 16 and row["n_clusters"] == 4  # the failed item forms no pair
    assert (row["only_a"], row["only_b"], row["both_right"], row["both_wrong"]) == (7, 2, 3, 4)
    assert row["diff"] == pytest.approx((7 - 2) / 16)
    assert row["diff_lo"] <= row["diff"] <= row["diff_hi"]


def test_sign_flip_with_one_item_per_cluster_is_exact_mcnemar():
    d = np.array([1.0] * 7 + [-1.0] * 2 + [0.0] * 7)
    assert sign_flip_pvalue(d) == pytest.approx(92 / 512)
    assert sign_flip_pvalue(np.zeros(5)) == 1.0


def test_sign_flip_flips_whole_clusters_by_hand():
    # cluster sums 3, 1, -1; with +3 the sums are 5, 3, 3, 1 (three reach |3|), mirrored with -3: 6 of 8 patterns
    assert sign_flip_pvalue(np.array([3.0, 1.0, -1.0])) == pytest.approx(6 / 8)


def test_paired_comparison_adjusts_across_cells_with_holm():
    records = _pair_records()
    other = records.copy()
    other["k"], other["item_id"] = 3, other["item_id"] + "-k3"
    table = paired_comparison(pd.concat([records, other], ignore_index=True), "A", "B", n_boot=20)
    assert len(table) == 2 and (table["p_adjusted"] == np.minimum(1.0, 2 * table["p_value"].min())).all()


def test_bh_and_by_adjustments_match_hand_values():
    p = np.array([0.01, 0.04, 0.03, np.nan])
    assert adjust_pvalues(p, "bh")[:3] == pytest.approx([0.03, 0.04, 0.04])
    by = np.minimum(1, np.array([0.03, 0.04, 0.04]) * (1 + 1 / 2 + 1 / 3))
    assert adjust_pvalues(p, "by")[:3] == pytest.approx(by)
    assert np.isnan(adjust_pvalues(p, "holm")[3])


def test_paired_comparison_without_shared_items_gives_reason():
    records = _pair_records()
    row = paired_comparison(records, "A", "missing").iloc[0]
    assert row["n_pairs"] == 0 and "no item" in row["reason"]


def test_gap_of_equal_rates_is_exactly_zero_not_float_noise():
    # 0.1 + 0.2 != 0.15 + 0.15 in floating point: both splits have competence 0.15
    # two tuples per split: the interval is expanded for few clusters and needs at least two
    parts = []
    for split, skills, values in (("seen", "rev+sft", [0.1, 0.2]), ("seen", "rot+sft", [0.1, 0.2]),
                                  ("heldout", "rev+mir", [0.15, 0.15]), ("heldout", "rot+mir", [0.15, 0.15])):
        part = tiny_records({"A": values}, skills=skills, k=2, mode="chain", split=split, metric="partial_credit")
        part["item_id"] = part["item_id"] + f"-{split}-{skills}"
        parts.append(part)
    p, _, _ = pipeline(pd.concat(parts, ignore_index=True), make_checkpoints(sizes=(1e4,)).assign(
        checkpoint_id="A"), n_boot=5)
    row = seen_heldout_table(p.sums, np.ones_like(p.weights)).iloc[0]
    assert (row["gap"], row["gap_lo"], row["gap_hi"]) == (0.0, 0.0, 0.0)
