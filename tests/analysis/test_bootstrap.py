"""Cluster bootstrap design: clusters are skill multisets, and each stratum keeps its cluster count."""
import numpy as np
import pandas as pd

from harness.analysis.bootstrap import assign_clusters, bootstrap_ci, cluster_design
from harness.analysis.schema import prepare_records, skill_set_key, split_skills

from .synthetic import make_family


def test_split_skills_and_order_free_key():
    assert split_skills("rev+sft") == ("rev", "sft")
    assert skill_set_key("sft+rev") == skill_set_key("rev+sft") == "rev+sft"
    assert skill_set_key("rev+rev") == "rev+rev"  # duplicates kept: the key has k names


def test_items_with_same_skill_multiset_share_a_cluster():
    records, _ = make_family(item_kw=dict(ks=(1, 2), n_tuples=3, items_per_tuple=4),
                             record_kw=dict(metrics=("exact_match",)))
    prepared = prepare_records(records)
    clusters, codes = assign_clusters(prepared)
    per_key = pd.Series(codes).groupby([prepared["k"], prepared["skill_key"]]).nunique()
    assert (per_key == 1).all()
    assert len(clusters) == 8 + 3  # one per skill at k = 1, one per skill set at k = 2


def test_weights_resample_each_stratum_with_its_own_size():
    clusters = pd.DataFrame({"cluster": range(5), "k": [1, 1, 1, 2, 2], "split": ["single"] * 3 + ["seen", "heldout"],
                             "skill_key": list("abcde")})
    design = cluster_design(clusters, 50, np.random.default_rng(0))
    assert design.n_boot == 50
    np.testing.assert_array_equal(design.weights[:, :3].sum(axis=1), 3)
    np.testing.assert_array_equal(design.weights[:, 3], 1)
    same = cluster_design(clusters, 50, np.random.default_rng(0))
    np.testing.assert_array_equal(design.weights, same.weights)


def test_bootstrap_ci_resamples_whole_clusters():
    # two clusters with constant values: a cluster bootstrap can only produce means of 0, 0.5 or 1
    frame = pd.DataFrame({"key": ["a"] * 50 + ["b"] * 50, "value": [0.0] * 50 + [1.0] * 50})
    estimate, lo, hi = bootstrap_ci(frame, lambda f: f["value"].mean(), cluster="key", n_boot=200, seed=0)
    assert estimate == 0.5 and lo == 0.0 and hi == 1.0
    _, row_lo, row_hi = bootstrap_ci(frame, lambda f: f["value"].mean(), n_boot=200, seed=0)
    assert 0.3 < row_lo < 0.5 < row_hi < 0.7
