"""Paired comparison of two checkpoints on the same items: exact McNemar test and a paired cluster bootstrap.

Only items scored (non-NaN) on both checkpoints form pairs. McNemar's exact test is the two-sided
binomial test of the discordant pairs (A right / B wrong vs A wrong / B right) against 1/2; it is
defined for 0/1 metrics only. The difference mean(A) - mean(B) gets a percentile interval from
resampling skill-multiset clusters of pairs within each (mode, k).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse

from harness.analysis.bootstrap import cluster_design, rng_for
from harness.analysis.schema import prepare_records
from harness.analysis.stats import mcnemar_exact, percentile_ci

PAIRED_COLUMNS: tuple[str, ...] = (
    "checkpoint_a", "checkpoint_b", "mode", "k", "metric", "n_pairs", "both_right", "only_a", "only_b",
    "both_wrong", "mcnemar_p", "diff", "diff_lo", "diff_hi", "reason",
)


def _pairs(records: pd.DataFrame, a: str, b: str, metric: str) -> pd.DataFrame:
    """One row per item scored on both checkpoints: item_id, mode, k, skill_key, a, b."""
    rows = records[records["metric"] == metric]
    left = rows[rows["checkpoint_id"] == a][["item_id", "mode", "k", "skill_key", "value"]]
    left = left.rename(columns={"value": "a"})
    right = rows[rows["checkpoint_id"] == b][["item_id", "value"]].rename(columns={"value": "b"})
    return left.merge(right, on="item_id", how="inner").dropna(subset=["a", "b"]).reset_index(drop=True)


def paired_comparison(records: pd.DataFrame, checkpoint_a: str, checkpoint_b: str, *, metric: str = "exact_match",
                      n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """Compares two checkpoints item by item, per (mode, k).

    Args:
        records: the runner's records table (raw or prepared).
        checkpoint_a, checkpoint_b: checkpoint ids.
        metric: metric to compare.
        n_boot: bootstrap replicates.
        seed: seed of the cluster bootstrap.

    Returns:
        One row per (mode, k) with discordant counts, McNemar p, diff = mean(A) - mean(B) and its interval.
    """
    if "skill_key" not in records.columns:
        records = prepare_records(records)
    pairs = _pairs(records, str(checkpoint_a), str(checkpoint_b), metric)
    base = {"checkpoint_a": checkpoint_a, "checkpoint_b": checkpoint_b, "metric": metric}
    if pairs.empty:
        return pd.DataFrame([dict(base, n_pairs=0, reason="no item scored on both checkpoints")],
                            columns=list(PAIRED_COLUMNS))
    clusters = pairs[["mode", "k", "skill_key"]].drop_duplicates().sort_values(["mode", "k", "skill_key"])
    clusters = clusters.reset_index(drop=True).assign(cluster=lambda f: np.arange(len(f)))
    pairs = pairs.merge(clusters, on=["mode", "k", "skill_key"])
    design = cluster_design(clusters, n_boot, rng_for(seed, "paired"), strata=("mode", "k"))
    groups = pairs.groupby(["mode", "k"], sort=True)
    cell = groups.ngroup().to_numpy()
    n_cells = int(cell.max()) + 1
    stats = _paired_boot(pairs, cell, n_cells, design.weights)
    out = []
    for (mode, k), rows in groups:
        j = int(cell[rows.index[0]])
        binary = bool(np.isin(rows[["a", "b"]].to_numpy(), (0.0, 1.0)).all())
        counts = _discordance(rows) if binary else {}
        out.append(dict(base, mode=mode, k=k, n_pairs=len(rows), **counts,
                        mcnemar_p=mcnemar_exact(counts["only_a"], counts["only_b"]) if binary else np.nan,
                        diff=float((rows["a"] - rows["b"]).mean()), diff_lo=stats[0][j], diff_hi=stats[1][j],
                        reason=None if binary else "McNemar needs 0/1 values"))
    return pd.DataFrame(out, columns=list(PAIRED_COLUMNS))


def _discordance(rows: pd.DataFrame) -> dict[str, int]:
    a, b = rows["a"].to_numpy() == 1.0, rows["b"].to_numpy() == 1.0
    return {"both_right": int(np.sum(a & b)), "only_a": int(np.sum(a & ~b)), "only_b": int(np.sum(~a & b)),
            "both_wrong": int(np.sum(~a & ~b))}


def _paired_boot(pairs: pd.DataFrame, cell: np.ndarray, n_cells: int, weights: np.ndarray):
    """Percentile interval of the per-cell mean difference under cluster weights."""
    n_clusters = weights.shape[1]
    c = pairs["cluster"].to_numpy()
    d = (pairs["a"] - pairs["b"]).to_numpy(float)
    diff_sum = sparse.csr_matrix((d, (c, cell)), shape=(n_clusters, n_cells))
    count = sparse.csr_matrix((np.ones(len(c)), (c, cell)), shape=(n_clusters, n_cells))
    num, den = np.asarray(diff_sum.T @ weights.T), np.asarray(count.T @ weights.T)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return percentile_ci(boot, axis=1)
