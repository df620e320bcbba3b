"""Collapse exponent c: the k-scaling under which one monotone curve fits every k, q_k(delta) = F(k^c delta).

Arora-Goyal's Cor. 13 makes competence a function of k times the excess loss, so c = 1. Skills that are
independent within each item give q_k = q_1^k; with a Weibull single-skill curve q_1 = exp(-lambda delta^b) that is
F(k^(1/b) delta), so c = 1/b (below 1 when b > 1). Unlike the parametric fit's a - b (`collapse`), c needs no
functional form for F: it is the c that minimises the weighted squared error of a non-increasing fit of
competence on log(delta) + c log(k) (the statistic of `cor13.shared_curve_test` at c = 1), so items that differ
in difficulty, which make the pooled curves non-Weibull, leave it at 1 under a true collapse.

The error is a step function of c (it changes only where the order of the cells on the shared axis changes),
so with few checkpoints a whole range of c fits best; c is searched on a grid (a coarse pass over
[C_LOW, C_HIGH], then a fine one at both ends of its best range), the estimate is the middle of that range, and
the interval runs from the 2.5th percentile of the range's lower end to the 97.5th percentile of its upper end
over the cluster-bootstrap replicates of the competence table (the same item-cluster draws as every other
interval), so it never claims more resolution than the checkpoints give. NaN with a
reason when fewer than 2 values of k or 4 cells are usable, when every c fits equally (competence flat), or
when c lies on the search bound.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from harness.analysis.cor13 import _decreasing
from harness.analysis.stats import percentile_ci

C_LOW, C_HIGH = -1.0, 4.0
"""Search range of c; an estimate on its edge is reported as NaN with a reason."""
_COARSE, _FINE = 0.05, 0.0025
"""Grid steps of the coarse and the fine pass."""
COLLAPSE_EXPONENT_KEYS: tuple[str, ...] = ("c_shared", "c_shared_lo", "c_shared_hi", "c_shared_reason")
"""What `collapse_exponent` returns (columns of the collapse table)."""


def _sse(log_d: np.ndarray, log_k: np.ndarray, q: np.ndarray, w: np.ndarray, c: float) -> float:
    fit = _decreasing(log_d + c * log_k, q, w)
    return float(np.nansum(w * (q - fit) ** 2))


def best_exponents(log_d: np.ndarray, log_k: np.ndarray, q: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """The range [lowest, highest] of c in [C_LOW, C_HIGH] with the smallest shared-curve error; NaN when every c
    fits equally.

    The error only changes where the order of the cells on the shared axis changes, so with few checkpoints a
    whole range of c fits best (every c in it orders the cells alike); the range is found to the fine step.

    Args:
        log_d: log excess loss per cell.
        log_k: log k per cell.
        q: chance-corrected competence per cell (NaN cells are ignored).
        w: weight per cell (items).
    """
    grid = np.arange(C_LOW, C_HIGH + _COARSE / 2, _COARSE)
    errors = np.array([_sse(log_d, log_k, q, w, c) for c in grid])
    if not np.isfinite(errors).all() or errors.max() - errors.min() <= 1e-12 * max(1.0, errors.max()):
        return float("nan"), float("nan")
    near = np.flatnonzero(errors <= errors.min() + 1e-12 * max(1.0, errors.min()))
    ends = [np.arange(max(C_LOW, grid[i] - _COARSE), min(C_HIGH, grid[i] + _COARSE) + _FINE / 2, _FINE)
            for i in (near[0], near[-1])]
    fine = np.concatenate(ends)
    grid = np.concatenate([grid, fine])
    errors = np.concatenate([errors, [_sse(log_d, log_k, q, w, c) for c in fine]])
    best = grid[errors <= errors.min() + 1e-12 * max(1.0, errors.min())]
    return float(best.min()), float(best.max())


def collapse_exponent(cells: pd.DataFrame, boot: dict[str, np.ndarray], *, coverage: float = 0.95) -> dict:
    """c with its cluster-bootstrap percentile interval, on one mode's cells (k = 1 and composite, trained k).

    Args:
        cells: competence rows with k, excess_loss, competence, n; index aligned with `boot`.
        boot: bootstrap replicates of the competence table (`cluster_sums.cell_boot`): "competence" and "n".
        coverage: the interval's level.

    Returns:
        c_shared, c_shared_lo, c_shared_hi and c_shared_reason (None when the estimate stands).
    """
    nan = float("nan")
    ok = cells[(cells["n"] > 0) & (cells["excess_loss"] > 0) & cells["competence"].notna()]
    if ok["k"].nunique() < 2 or len(ok) < 4:
        return dict(zip(COLLAPSE_EXPONENT_KEYS, (nan, nan, nan, "fewer than 2 values of k or 4 cells")))
    idx = ok.index.to_numpy()
    log_d, log_k = np.log(ok["excess_loss"].to_numpy(float)), np.log(ok["k"].to_numpy(float))
    low, high = best_exponents(log_d, log_k, ok["competence"].to_numpy(float), ok["n"].to_numpy(float))
    if not np.isfinite(low):
        return dict(zip(COLLAPSE_EXPONENT_KEYS, (nan, nan, nan, "competence is flat: every c fits equally")))
    if low <= C_LOW + _FINE or high >= C_HIGH - _FINE:
        return dict(zip(COLLAPSE_EXPONENT_KEYS, (nan, nan, nan, f"c on its search bound [{C_LOW:g}, {C_HIGH:g}]")))
    reps = np.array([best_exponents(log_d, log_k, boot["competence"][idx, b], boot["n"][idx, b])
                     for b in range(boot["n"].shape[1])])
    c = (low + high) / 2.0
    if np.isfinite(reps[:, 0]).sum() < 10:
        return dict(zip(COLLAPSE_EXPONENT_KEYS, (c, nan, nan, "fewer than 10 bootstrap replicates with an estimate")))
    lo, _ = percentile_ci(reps[:, 0], level=coverage)
    _, hi = percentile_ci(reps[:, 1], level=coverage)
    return dict(zip(COLLAPSE_EXPONENT_KEYS, (c, float(lo), float(hi), None)))
