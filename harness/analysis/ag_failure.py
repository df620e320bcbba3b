"""Arora-Goyal predictions (a) single-skill failure vs excess loss and (b) the k-tuple union rule.

(a) Failure f = min(1, c delta^b) of single skills (chance-corrected: success p = g + (1-g)(1-f)),
    fitted by binomial likelihood on the per-checkpoint k = 1 counts; b's interval comes from a
    checkpoint bootstrap (A&G's linear law is b = 1, tested rather than assumed). Calibration on a
    reference checkpoint r: f_m = f_r (delta_m / delta_r)^b, f_r its Jeffreys-smoothed failure.
    The default reference is the checkpoint whose smoothed failure is closest to 1/2 (the most
    informative binomial rate). A fit that does not identify c and b is reported as NaN with a
    reason: single-skill competence at 0 (or 1) at every checkpoint (nothing to fit), a parameter
    on its search bound (b = 0: failure does not fall with excess loss), a fitted failure pinned
    at 1 at every checkpoint, or a zero-width bootstrap interval of b.
(b) k-tuple rule: composite failure F_k <= min(1, k f_1) (union bound over the k skills), shown
    beside the independence prediction 1 - (1 - f_1)^k and the observed F_k with its interval.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import optimize

from harness.analysis.bootstrap import blas_single_thread, unit_resamples
from harness.analysis.stats import (binomial_nll, binomial_score, chance_correct, floor_or_ceiling, jeffreys,
                                    jeffreys_interval, percentile_ci, zero_width)

FAILURE_COLUMNS: tuple[str, ...] = ("checkpoint_id", "loss", "excess_loss", "n", "failure", "failure_lo", "failure_hi",
                                    "fitted", "calibrated", "is_reference")
FAILURE_FIT_COLUMNS: tuple[str, ...] = ("c", "b", "b_lo", "b_hi", "b_is_1_plausible", "linear_law", "reference_checkpoint",
                                        "c_reference", "n_checkpoints", "nll", "n_boot_valid", "reason")
KTUPLE_COLUMNS: tuple[str, ...] = ("checkpoint_id", "mode", "k", "f1", "observed", "observed_lo", "observed_hi",
                                   "union", "independent", "within_union", "closer_to", "reason")


_BOUNDS = ((-50.0, 50.0), (0.0, 20.0))
"""Search bounds of (log c, b)."""


def _fit_power_failure(delta, s, n, g, start=None) -> tuple[np.ndarray, float]:
    """(log c, b) maximizing the binomial likelihood of f = min(1, c delta^b).

    Where c delta^b >= 1 at every point the likelihood is flat (f is clipped at 1) and L-BFGS-B stops
    where it starts, so without a given start the best of three starts is kept: the log-log
    least-squares line, a constant failure (b = 0) and b = 1 through the mean failure.
    """
    log_d = np.log(delta)

    def objective(theta):
        f_raw = np.exp(np.clip(theta[0] + theta[1] * log_d, -700, 50))
        f = np.minimum(1.0, f_raw)
        p = g + (1.0 - g) * (1.0 - f)
        dp = -(1.0 - g) * np.where(f_raw < 1.0, f_raw, 0.0)
        score = binomial_score(s, n, p) * dp
        return float(binomial_nll(s, n, p)), np.array([score.sum(), (score * log_d).sum()])

    if start is None:
        f_obs = np.clip(1.0 - chance_correct(jeffreys(s, n), g), 1e-4, 1.0)
        slope, icpt = np.polyfit(log_d, np.log(f_obs), 1) if np.ptp(log_d) > 0 else (1.0, 0.0)
        mean_log_f = float(np.log(np.clip(np.mean(f_obs), 1e-4, 0.999)))
        starts = [np.array([icpt, slope]), np.array([mean_log_f, 0.0]),
                  np.array([mean_log_f - float(np.mean(log_d)), 1.0])]
    else:
        starts = [np.asarray(start, float)]
    lower, upper = np.array(_BOUNDS).T
    results = [optimize.minimize(objective, np.clip(x0, lower, upper), jac=True, method="L-BFGS-B", bounds=_BOUNDS)
               for x0 in starts]
    best = min(results, key=lambda r: r.fun)
    return np.asarray(best.x), float(best.fun)


def _unidentified(theta: np.ndarray, delta: np.ndarray, b_lo: float, b_hi: float, n_valid: int) -> str | None:
    """Why a fitted (log c, b) is not an estimate (see the module docstring), or None."""
    (lo_c, hi_c), (lo_b, hi_b) = _BOUNDS
    if theta[1] <= lo_b + 1e-6:
        return "b at its bound 0: single-skill failure does not fall with excess loss here (no transition to fit)"
    if theta[1] >= hi_b - 1e-6 or not lo_c + 1e-6 < theta[0] < hi_c - 1e-6:
        return "c or b on its search bound: the failure law is not identified by these data"
    if np.all(np.exp(theta[0]) * delta ** theta[1] >= 1.0):
        return "fitted failure is 1 at every checkpoint: c and b are not identified"
    if zero_width(b_lo, b_hi, theta[1], n_valid):
        return "the bootstrap interval of b has zero width: every refit stayed at its start, b is not identified"
    return None


def _exponent_interval(delta, s, n, g, theta, counts, n_boot, rng) -> tuple[float, float, int]:
    reps = np.full(n_boot, np.nan)
    with blas_single_thread():
        for i, idx in enumerate(unit_resamples(len(delta), n_boot, rng)):
            if len(np.unique(delta[idx])) < 3:
                continue
            s_i, n_i = (s[idx], n[idx]) if counts is None else (counts[0][idx, i % counts[0].shape[1]],
                                                                 counts[1][idx, i % counts[1].shape[1]])
            reps[i] = _fit_power_failure(delta[idx], s_i, n_i, g[idx], start=theta)[0][1]
    lo, hi = percentile_ci(reps)
    return lo, hi, int(np.isfinite(reps).sum())


def linear_law_reading(b: float, b_lo: float, b_hi: float) -> str | None:
    """What b's interval says about A&G's linear law theta ∝ delta (b = 1), in words; None without an interval."""
    if not (np.isfinite(b_lo) and np.isfinite(b_hi)):
        return None
    if b_lo <= 1.0 <= b_hi:
        return f"consistent with A&G's linear law: b = {b:.2f} [{b_lo:.2f}, {b_hi:.2f}] contains 1"
    side = "faster" if b_lo > 1.0 else "slower"
    return (f"the data disagree with A&G's linear law (b = 1): b = {b:.2f} [{b_lo:.2f}, {b_hi:.2f}] excludes 1 "
            f"(failure falls {side} than linearly with excess loss)")


def failure_law(singles: pd.DataFrame, *, n_boot: int, rng: np.random.Generator, reference: str | None = None,
                boot: dict[str, np.ndarray] | None = None) -> tuple[pd.DataFrame, dict]:
    """Fits (a) on the k = 1 rows of the competence table for one metric (see module docstring).

    Args:
        singles: k = 1 rows of the competence table (one per checkpoint).
        n_boot: bootstrap replicates for b's interval.
        rng: generator of the checkpoint resampling.
        reference: calibration checkpoint; None (or an unknown id) picks the one with failure nearest 1/2.
        boot: the competence table's item-cluster replicates (rows aligned with its index). When given,
            each replicate also uses that replicate's counts (a two-stage bootstrap: checkpoints, then
            items within them), so b's interval reflects item noise as well as the spread between checkpoints.

    Returns:
        (`ag_failure` table per checkpoint, one `ag_failure_fit` row as a dict).
    """
    rows = singles[(singles["n"] > 0) & np.isfinite(singles["excess_loss"]) & np.isfinite(singles["chance"])]
    rows = rows.sort_values("loss")
    counts = None if boot is None else (boot["total"][rows.index.to_numpy()], boot["n"][rows.index.to_numpy()])
    rows = rows.reset_index(drop=True)
    s, n, g, delta = (rows[c].to_numpy(float) for c in ("successes", "n", "chance", "excess_loss"))
    table = rows[["checkpoint_id", "loss", "excess_loss", "n"]].copy()
    table["failure"] = 1.0 - chance_correct(jeffreys(s, n), g)
    if {"competence_lo", "competence_hi"} <= set(rows.columns):  # the competence table's clustered interval
        table["failure_lo"], table["failure_hi"] = 1.0 - rows["competence_hi"], 1.0 - rows["competence_lo"]
    else:  # items as independent (too short with 8 skill clusters; calibration: benchmarks/calibration/intervals.py)
        lo, hi = jeffreys_interval(s, n)
        table["failure_lo"], table["failure_hi"] = 1.0 - chance_correct(hi, g), 1.0 - chance_correct(lo, g)
    if rows["excess_loss"].nunique() < 3:
        return table.reindex(columns=list(FAILURE_COLUMNS)), {
            "n_checkpoints": len(rows), "reason": f"{len(rows)} checkpoints with k = 1 counts and excess loss; need 3"}
    if flat := floor_or_ceiling(s, n, g, "no failure law to fit"):
        return table.reindex(columns=list(FAILURE_COLUMNS)), {"n_checkpoints": len(rows), "reason": flat}
    theta, nll = _fit_power_failure(delta, s, n, g)
    b_lo, b_hi, n_valid = _exponent_interval(delta, s, n, g, theta, counts, n_boot, rng)
    if why := _unidentified(theta, delta, b_lo, b_hi, n_valid):
        return table.reindex(columns=list(FAILURE_COLUMNS)), {"n_checkpoints": len(rows), "nll": nll,
                                                              "n_boot_valid": n_valid, "reason": why}
    ref = reference if reference in set(rows["checkpoint_id"]) else \
        rows["checkpoint_id"].iloc[int(np.argmin(np.abs(table["failure"].to_numpy() - 0.5)))]
    r = int(np.flatnonzero(rows["checkpoint_id"] == ref)[0])
    c_ref = table["failure"].iloc[r] / delta[r] ** theta[1]
    table["fitted"] = np.minimum(1.0, np.exp(theta[0]) * delta ** theta[1])
    table["calibrated"] = np.minimum(1.0, c_ref * delta ** theta[1])
    table["is_reference"] = table["checkpoint_id"] == ref
    fit = {"c": float(np.exp(theta[0])), "b": float(theta[1]), "b_lo": b_lo, "b_hi": b_hi,
           "b_is_1_plausible": bool(b_lo <= 1.0 <= b_hi) if np.isfinite(b_lo) else None,
           "linear_law": linear_law_reading(float(theta[1]), b_lo, b_hi),
           "reference_checkpoint": ref, "c_reference": float(c_ref), "n_checkpoints": len(rows), "nll": nll,
           "n_boot_valid": n_valid, "reason": None}
    return table[list(FAILURE_COLUMNS)], fit


def ktuple_table(competence: pd.DataFrame, failure: pd.DataFrame, metric: str = "exact_match") -> pd.DataFrame:
    """(b) per (checkpoint, mode, k > 1): observed composite failure vs min(1, k f1) and 1 - (1 - f1)^k."""
    f1 = failure.set_index("checkpoint_id")["failure"]
    rows = competence[(competence["k"] > 1) & (competence["metric"] == metric)].copy()
    rows["f1"] = rows["checkpoint_id"].map(f1).astype(float)
    rows["observed"] = 1.0 - rows["competence"]
    rows["observed_lo"], rows["observed_hi"] = 1.0 - rows["competence_hi"], 1.0 - rows["competence_lo"]
    rows["union"] = np.minimum(1.0, rows["k"] * rows["f1"])
    rows["independent"] = 1.0 - (1.0 - rows["f1"]) ** rows["k"]
    known = rows["f1"].notna() & rows["observed"].notna()
    rows["within_union"] = np.where(known, rows["observed_lo"] <= rows["union"] + 1e-12, None)
    closer = np.abs(rows["observed"] - rows["union"]) <= np.abs(rows["observed"] - rows["independent"])
    rows["closer_to"] = np.where(known, np.where(closer, "union", "independent"), None)
    rows["reason"] = np.where(known, None, "no single-skill failure or composite competence for this checkpoint")
    return rows[list(KTUPLE_COLUMNS)].reset_index(drop=True)
