"""Largest composable k at a competence level, per (checkpoint, mode), and its scaling with excess loss.

Two estimates of k*, where chance-corrected competence over k crosses `level` (default 0.5):
* ``k_star`` (model-free): the curve is made non-increasing in k (running minimum: a k-skill item
  needs at least what a (k-1)-skill item needs) and log competence is interpolated linearly in k
  between administered k. Censored when competence is still >= level at the largest k ("above")
  or already < level at the smallest ("below").
* ``k_star_fit``: per checkpoint, q_k = exp(-mu k^a) fitted by binomial likelihood over the
  administered k (the per-checkpoint form of the collapse model, exact under both A&G and
  independence), solved for q = level: k* = (ln(1/level) / mu)^(1/a); kept within [1, 2 k_max].
The scaling is the least-squares slope of log k* on log delta (from ``k_star_fit``; the
interpolated one is biased when log q is curved in k), with a checkpoint-bootstrap interval.
A&G's collapse predicts the slope -b/a of the collapse fit: -1 when a = b, -b under independence.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from scipy import optimize

from harness.analysis.bootstrap import unit_resamples
from harness.analysis.stats import binomial_nll, percentile_ci

COMPOSABLE_COLUMNS: tuple[str, ...] = ("checkpoint_id", "mode", "loss", "excess_loss", "level", "k_star", "censored",
                                       "k_star_fit", "k_max", "reason")
SCALING_COLUMNS: tuple[str, ...] = ("mode", "level", "n_points", "slope", "slope_lo", "slope_hi",
                                    "slope_interpolated", "slope_collapse", "reason")


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


def fitted_k_star(k: np.ndarray, successes: np.ndarray, n: np.ndarray, chance: np.ndarray, level: float) -> float:
    """k* from q_k = exp(-mu k^a) fitted to one checkpoint's counts; NaN outside [1, 2 k_max] or without signal."""
    k, s, n, g = (np.asarray(a, float) for a in (k, successes, n, chance))
    q_obs = np.clip(((s + 0.5) / (n + 1.0) - g) / (1.0 - g), 1e-3, 1.0 - 1e-3)
    if len(k) < 2 or np.ptp(np.log(k)) == 0:
        return float("nan")
    slope, icpt = np.polyfit(np.log(k), np.log(-np.log(q_obs)), 1)

    def nll(theta):
        q = np.exp(-np.exp(np.clip(theta[0] + theta[1] * np.log(k), -700, 50)))
        return float(binomial_nll(s, n, g + (1.0 - g) * q))

    res = optimize.minimize(nll, np.array([icpt, np.clip(slope, 0.1, 9.0)]), method="L-BFGS-B",
                            bounds=[(-30.0, 30.0), (0.05, 10.0)])
    log_mu, a = res.x
    k_star = float(np.exp((np.log(np.log(1.0 / level)) - log_mu) / a))
    return k_star if 1.0 <= k_star <= 2.0 * k.max() else float("nan")


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
        fit = fitted_k_star(*(curve[c].to_numpy(float) for c in ("k", "successes", "n", "chance")), level)
        reason = {None: None, "above": f"competence >= {level} up to k_max: k* >= k_max",
                  "below": f"competence < {level} already at the smallest k"}[censored]
        out.append(dict(base, k_star=k_star, censored=censored, k_star_fit=fit, reason=reason))
    return pd.DataFrame(out, columns=list(COMPOSABLE_COLUMNS))


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.polyfit(x, y, 1)[0]) if np.ptp(x) > 0 else float("nan")


def composable_scaling(table: pd.DataFrame, *, n_boot: int, rng: np.random.Generator,
                       collapse_slopes: dict[str, float] | None = None) -> pd.DataFrame:
    """Log-log slope of k* on excess loss per mode, with a checkpoint-bootstrap percentile interval."""
    out = []
    for mode, rows in table.groupby("mode", sort=True):
        positive = rows[rows["excess_loss"] > 0]
        ok = positive[np.isfinite(positive["k_star_fit"].astype(float))]
        interp = positive[np.isfinite(positive["k_star"].astype(float))]
        base = {"mode": mode, "level": rows["level"].iloc[0], "n_points": len(ok),
                "slope_collapse": (collapse_slopes or {}).get(mode, np.nan),
                "slope_interpolated": _slope(np.log(interp["excess_loss"].to_numpy(float)),
                                             np.log(interp["k_star"].to_numpy(float))) if len(interp) >= 3 else np.nan}
        if len(ok) < 3:
            out.append(dict(base, reason=f"{len(ok)} checkpoints with a fitted k* and excess loss; need 3"))
            continue
        x, y = np.log(ok["excess_loss"].to_numpy(float)), np.log(ok["k_star_fit"].to_numpy(float))
        boot = np.array([_slope(x[i], y[i]) for i in unit_resamples(len(x), n_boot, rng)])
        lo, hi = percentile_ci(boot)
        out.append(dict(base, slope=_slope(x, y), slope_lo=float(lo), slope_hi=float(hi), reason=None))
    return pd.DataFrame(out, columns=list(SCALING_COLUMNS))
