"""Seeded resampling designs: item clusters (by skill multiset) and checkpoints.

Items are resampled in clusters because items that share a skill multiset share its difficulty; a
cluster is one ``skill_key`` within its (k, split) stratum, and each stratum keeps its cluster count.
One weight matrix is drawn per analysis and shared by every checkpoint, mode and metric, so paired
quantities (gaps, ratios, curve fits across checkpoints) see the same resampled item set.
"""
from __future__ import annotations

import contextlib
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd


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
