"""Largest composable k at a competence level, per (checkpoint, mode), and its scaling with excess loss.

k* is where the chance-corrected competence curve over k crosses `level` (default 0.5): the curve is
first made non-increasing in k (running minimum, since a k-skill item needs at least what a
(k-1)-skill item needs) and log competence is interpolated linearly in k between the administered
k. k* is censored when competence is still >= level at the largest k ("above": k* >= k_max) or
already < level at k = 1 ("below"). The scaling is the least-squares slope of log k* on
log delta over uncensored checkpoints, with a checkpoint-bootstrap interval; A&G's collapse
predicts the slope -b/a of the collapse fit (k* delta constant when a = b, slope -1).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from harness.analysis.bootstrap import unit_resamples
from harness.analysis.stats import percentile_ci

COMPOSABLE_COLUMNS: tuple[str, ...] = ("checkpoint_id", "mode", "loss", "excess_loss", "level", "k_star", "censored",
                                       "k_max", "reason")
SCALING_COLUMNS: tuple[str, ...] = ("mode", "level", "n_points", "slope", "slope_lo", "slope_hi",
                                    "slope_collapse", "reason")


def crossing_k(k: np.ndarray, q: np.ndarray, level: float) -> tuple[float, str | None]:
    """k at which the non-increasing envelope of q(k) crosses `level`.

    Returns:
        (k*, censoring) with censoring None, "above" or "below"; k* is NaN when censored.
    """
    order = np.argsort(k)
    k, q = np.asarray(k, float)[order], np.minimum.accumulate(np.asarray(q, float)[order])
    if q[0] < level:
        return float("nan"), "below"
    if q[-1] >= level:
        return float("nan"), "above"
    j = int(np.flatnonzero(q < level)[0])
    lo, hi = np.log(max(q[j - 1], 1e-300)), np.log(max(q[j], 1e-300))
    frac = (np.log(level) - lo) / (hi - lo) if hi < lo else 0.0
    return float(k[j - 1] + frac * (k[j] - k[j - 1])), None


def composable_table(competence: pd.DataFrame, *, metric: str = "exact_match", level: float = 0.5) -> pd.DataFrame:
    """k* per (checkpoint, composite mode), using the k = 1 cells with each mode's composite cells."""
    rows = competence[(competence["metric"] == metric) & competence["competence"].notna()]
    singles = rows[rows["k"] == 1]
    out = []
    for (ck, mode), comp in rows[rows["k"] > 1].groupby(["checkpoint_id", "mode"], sort=True):
        curve = pd.concat([singles[singles["checkpoint_id"] == ck], comp])
        base = {"checkpoint_id": ck, "mode": mode, "loss": comp["loss"].iloc[0],
                "excess_loss": comp["excess_loss"].iloc[0], "level": level, "k_max": int(curve["k"].max())}
        if curve["k"].nunique() < 2:
            out.append(dict(base, reason="competence known at fewer than 2 values of k"))
            continue
        k_star, censored = crossing_k(curve["k"].to_numpy(), curve["competence"].to_numpy(), level)
        reason = {None: None, "above": f"competence >= {level} up to k_max: k* >= k_max",
                  "below": f"competence < {level} already at the smallest k"}[censored]
        out.append(dict(base, k_star=k_star, censored=censored, reason=reason))
    return pd.DataFrame(out, columns=list(COMPOSABLE_COLUMNS))


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.polyfit(x, y, 1)[0]) if np.ptp(x) > 0 else float("nan")


def composable_scaling(table: pd.DataFrame, *, n_boot: int, rng: np.random.Generator,
                       collapse_slopes: dict[str, float] | None = None) -> pd.DataFrame:
    """Log-log slope of k* on excess loss per mode, with a checkpoint-bootstrap percentile interval."""
    out = []
    for mode, rows in table.groupby("mode", sort=True):
        ok = rows[np.isfinite(rows["k_star"].astype(float)) & (rows["excess_loss"] > 0)]
        base = {"mode": mode, "level": rows["level"].iloc[0], "n_points": len(ok),
                "slope_collapse": (collapse_slopes or {}).get(mode, np.nan)}
        if len(ok) < 3:
            out.append(dict(base, reason=f"{len(ok)} uncensored checkpoints with excess loss; need 3"))
            continue
        x, y = np.log(ok["excess_loss"].to_numpy(float)), np.log(ok["k_star"].to_numpy(float))
        boot = np.array([_slope(x[i], y[i]) for i in unit_resamples(len(x), n_boot, rng)])
        lo, hi = percentile_ci(boot)
        out.append(dict(base, slope=_slope(x, y), slope_lo=float(lo), slope_hi=float(hi), reason=None))
    return pd.DataFrame(out, columns=list(SCALING_COLUMNS))
