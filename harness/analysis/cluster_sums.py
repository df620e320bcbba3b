"""NaN-aware sums of records per cluster, rolled up to any grouping with cluster-bootstrap replicates.

Every aggregate in the analyzer is derived from the same cluster sums, so a failed record (value NaN)
is excluded from `n` and counted in `n_failed`; it never contributes a 0 to any mean.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from harness.analysis.stats import chance_correct

SUM_KEYS: tuple[str, ...] = ("checkpoint_id", "mode", "k", "split", "metric", "cluster")
"""Grouping of the cluster-sum table: the finest level any analysis needs."""
SUM_COLUMNS: tuple[str, ...] = ("total", "n", "n_failed", "chance_total", "chance_n")
"""total = sum of non-NaN values; n = non-NaN count; n_failed = NaN count; chance sums over scored rows."""


def cluster_sums(records: pd.DataFrame, cluster: np.ndarray) -> pd.DataFrame:
    """Sums prepared records per (checkpoint, mode, k, split, metric, cluster).

    Args:
        records: output of `schema.prepare_records`.
        cluster: cluster index of each record (see `bootstrap.assign_clusters`).
    """
    value = records["value"].to_numpy(float)
    chance = records["chance"].to_numpy(float)
    scored = np.isfinite(value)
    chance_ok = scored & np.isfinite(chance)
    frame = pd.DataFrame({
        "checkpoint_id": records["checkpoint_id"].to_numpy(), "mode": records["mode"].to_numpy(),
        "k": records["k"].to_numpy(), "split": records["split"].to_numpy(),
        "metric": records["metric"].to_numpy(), "cluster": cluster,
        "total": np.where(scored, value, 0.0), "n": scored.astype(float),
        "n_failed": (~scored).astype(float), "chance_total": np.where(chance_ok, chance, 0.0),
        "chance_n": chance_ok.astype(float),
    })
    return frame.groupby(list(SUM_KEYS), sort=True, observed=True).sum().reset_index()


def _rates(total: np.ndarray, n: np.ndarray, chance_total: np.ndarray, chance_n: np.ndarray):
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, total / np.where(n > 0, n, 1.0), np.nan)
        chance = np.where(chance_n > 0, chance_total / np.where(chance_n > 0, chance_n, 1.0), np.nan)
    return mean, chance, chance_correct(mean, chance)


def cell_table(sums: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Rolls cluster sums up to `by` and derives mean, chance, chance-corrected competence and a reason.

    Returns:
        One row per group: `by` + total, n, n_failed, chance_total, chance_n, mean, chance,
        competence, reason (None when mean is defined, else why it is NaN).
    """
    cells = sums.groupby(list(by), sort=True, observed=True)[list(SUM_COLUMNS)].sum().reset_index()
    mean, chance, competence = _rates(*(cells[c].to_numpy(float) for c in ("total", "n", "chance_total", "chance_n")))
    cells["mean"], cells["chance"], cells["competence"] = mean, chance, competence
    reasons = np.where(cells["n"] > 0, None, "all " + cells["n_failed"].astype(int).astype(str)
                       + " records failed to score")
    reasons = np.where((cells["n"] > 0) & ~np.isfinite(chance), "no chance level for this metric", reasons)
    cells["reason"] = reasons
    return cells


def cell_boot(sums: pd.DataFrame, by: Sequence[str], weights: np.ndarray) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Cluster-bootstrap replicates of the cell sums of `cell_table(sums, by)`.

    Replicate b of a cell's sum is sum_c weights[b, c] * sum_c, so one sparse product gives all cells.

    Returns:
        (cells, boot) where boot maps total, n, chance_total, chance_n, mean, chance and competence
        to arrays of shape (n_cells, n_boot), rows in the order of `cells`.
    """
    cells = cell_table(sums, by)
    cell_of_row = sums.groupby(list(by), sort=True, observed=True).ngroup().to_numpy(np.int64)
    n_clusters, n_cells = weights.shape[1], len(cells)
    cluster = sums["cluster"].to_numpy(np.int64)
    boot: dict[str, np.ndarray] = {}
    for column in SUM_COLUMNS:
        if column == "n_failed":
            continue
        matrix = sparse.csr_matrix((sums[column].to_numpy(float), (cluster, cell_of_row)),
                                   shape=(n_clusters, n_cells))
        boot[column] = np.asarray((matrix.T @ weights.T))
    boot["mean"], boot["chance"], boot["competence"] = _rates(
        boot["total"], boot["n"], boot["chance_total"], boot["chance_n"])
    return cells, boot
