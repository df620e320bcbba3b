"""Seeded resampling designs: item clusters (by skill multiset) and checkpoints.

Items are resampled in clusters because items that share a skill multiset share its difficulty; a
cluster is one ``skill_key`` within its (k, split) stratum, and each stratum keeps its cluster count.
One weight matrix is drawn per analysis and shared by every checkpoint, mode and metric, so paired
quantities (gaps, ratios, curve fits across checkpoints) see the same resampled item set.
"""
from __future__ import annotations

import contextlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.analysis.stats import percentile_ci


def blas_single_thread() -> contextlib.AbstractContextManager:
    """Limits BLAS to one thread while many tiny optimizations run.

    Threaded OpenBLAS inside L-BFGS-B on 3-vectors spins against other processes on a shared
    machine (measured: 2 ms -> 90 ms per fit on 2 busy cores). Uses threadpoolctl when installed.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: only a speed-up
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def rng_for(seed: int, stream: str) -> np.random.Generator:
    """A generator for one named analysis, independent of the order in which analyses run."""
    return np.random.default_rng([int(seed), zlib.crc32(stream.encode())])


@dataclass(frozen=True)
class ClusterDesign:
    """Bootstrap weights over item clusters."""

    clusters: pd.DataFrame
    """One row per cluster: ``cluster`` (int index), ``k``, ``split``, ``skill_key``."""
    weights: np.ndarray
    """(n_boot, n_clusters) multinomial counts: how often each cluster is drawn in each replicate."""

    @property
    def n_boot(self) -> int:
        """Number of bootstrap replicates."""
        return int(self.weights.shape[0])


def assign_clusters(records: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Numbers the (k, split, skill_key) clusters of prepared records.

    Returns:
        (clusters table, cluster index of each record row).
    """
    grouped = records.groupby(["k", "split", "skill_key"], sort=True, observed=True)
    clusters = grouped.size().reset_index()[["k", "split", "skill_key"]]
    clusters.insert(0, "cluster", np.arange(len(clusters)))
    return clusters, grouped.ngroup().to_numpy(np.int64)


def cluster_design(clusters: pd.DataFrame, n_boot: int, rng: np.random.Generator,
                   strata: tuple[str, ...] = ("k", "split")) -> ClusterDesign:
    """Draws cluster weights: within each stratum, its m clusters are resampled with replacement m times."""
    weights = np.zeros((n_boot, len(clusters)))
    for _, index in clusters.groupby(list(strata), sort=True).indices.items():
        m = len(index)
        weights[:, index] = rng.multinomial(m, np.full(m, 1.0 / m), size=n_boot)
    return ClusterDesign(clusters=clusters, weights=weights)


def unit_resamples(n_units: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_units) row indices for a plain bootstrap over units (e.g. checkpoints)."""
    return rng.integers(0, n_units, size=(n_boot, n_units))


def bootstrap_ci(frame: pd.DataFrame, statistic: Callable[[pd.DataFrame], float], *, cluster: str | None = None,
                 n_boot: int = 200, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """Generic percentile bootstrap of any statistic of a table, resampling rows or whole clusters.

    The vectorized analyses use `cluster_design` weights instead; this is for one-off statistics
    (e.g. in reports). Replicates where the statistic is NaN are ignored.

    Args:
        frame: the data, e.g. records of one cell.
        statistic: maps a (resampled) frame to a number.
        cluster: column whose values are resampled as units (e.g. "skill_key" or "checkpoint_id");
            None resamples rows.
        n_boot: replicates.
        seed: seed of the resampling.
        level: interval coverage.

    Returns:
        (estimate on `frame`, lower, upper).
    """
    rng = np.random.default_rng(seed)
    groups = list(frame.groupby(cluster, sort=True).indices.values()) if cluster else \
        [np.array([i]) for i in range(len(frame))]
    draws = unit_resamples(len(groups), n_boot, rng)
    reps = np.array([statistic(frame.iloc[np.concatenate([groups[g] for g in row])]) for row in draws], float)
    lo, hi = percentile_ci(reps, level=level)
    return float(statistic(frame)), float(lo), float(hi)
