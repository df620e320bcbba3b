"""Arora-Goyal Cor. 13 (the k'-tuple rule) and a non-parametric collapse test.

Cor. 13: competence on k'-tuples at excess loss delta equals single-skill competence at k' delta,
Curve_k'(delta) = Curve_1(k' delta). Per (checkpoint, mode, k'): observed chance-corrected competence
of the k'-skill items against the single-skill curve read at k' delta (made non-increasing in delta
by isotonic regression, interpolated linearly in log delta on the complementary log-log scale; NaN + reason where k' delta lies outside
the single-skill checkpoints' range). The difference has a percentile interval from the item-cluster
bootstrap (the same draw for both sides), and per (mode, k') the mean difference over checkpoints
has one too. This compares mean curves, not the full per-tuple failure distributions. The single-skill
side rests on as many bootstrap clusters as there are skills (8 in the built-in catalog), too few for a
plain percentile interval (it covered 0.87 at k = 2 and 0.91 at k = 3 of a nominal 0.95 in
benchmarks/bench_calibration.py; 42 checkpoints instead of 12 did not help), so the intervals are
Hesterberg's expanded percentile intervals for G = the number of single-skill clusters
(`stats.expanded_level`, as in the paired comparison): 0.95 asks for the 0.9885 percentile interval at
G = 8. The population is that of the resampled clusters: skills (and skill tuples) like the catalog's,
drawn at random, not the 8 fixed skills (a stratified bootstrap of items within skills would answer
that narrower question and would be narrower).

Non-parametric collapse: one non-increasing F(log(k delta)) shared by every trained k against a
separate non-increasing curve per k (isotonic fits, weighted by items). T = SSE(shared) - SSE(separate)
>= 0; its null distribution is the shared fit plus each bootstrap replicate's deviation from the
observed competences (clusters shared by all checkpoints), p = (#{T* >= T} + 1) / (B + 1). Unlike the
parametric collapse test it assumes no functional form for F.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy.optimize import isotonic_regression

from harness.analysis.stats import expanded_level, percentile_ci

COR13_COLUMNS: tuple[str, ...] = ("checkpoint_id", "mode", "k", "excess_loss", "observed", "predicted", "diff",
                                  "diff_lo", "diff_hi", "reason")
COR13_SUMMARY_COLUMNS: tuple[str, ...] = ("mode", "k", "n_checkpoints", "mean_diff", "mean_diff_lo", "mean_diff_hi",
                                          "consistent", "reason")


def _decreasing(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted non-increasing isotonic fit of y on x (any order); NaN y ignored (fitted NaN)."""
    out = np.full(len(y), np.nan)
    ok = np.isfinite(y) & np.isfinite(x) & (w > 0)
    if not ok.any():
        return out
    order = np.flatnonzero(ok)[np.argsort(x[ok], kind="stable")]
    out[order] = isotonic_regression(y[order], weights=w[order], increasing=False).x
    return out


def _single_curve(log_d: np.ndarray, q: np.ndarray, w: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Monotone single-skill curve read at log deltas `at` (NaN outside the observed range)."""
    fit = _decreasing(log_d, q, w)
    ok = np.isfinite(fit)
    if ok.sum() < 2:
        return np.full(len(at), np.nan)
    xs, ys = log_d[ok], fit[ok]
    order = np.argsort(xs)
    xs, ys = xs[order], ys[order]
    inside = (at >= xs[0] - 1e-12) & (at <= xs[-1] + 1e-12)
    # interpolated on the complementary log-log scale, where competence exp(-lam delta^b) is linear in
    # log delta: a straight line in q between checkpoints misses a steep transition by a wide margin
    z = np.log(-np.log(np.clip(ys, 1e-6, 1.0 - 1e-6)))
    q = np.exp(-np.exp(np.interp(at, xs, z)))
    q = np.where(np.interp(at, xs, ys) >= 1.0 - 1e-6, 1.0, np.where(np.interp(at, xs, ys) <= 1e-6, 0.0, q))
    return np.where(inside, q, np.nan)


def _cells(competence: pd.DataFrame, mode: str, metric: str) -> pd.DataFrame:
    rows = competence[(competence["metric"] == metric) & ((competence["mode"] == mode) | (competence["k"] == 1))
                      & (competence["n"] > 0) & (competence["excess_loss"] > 0) & competence["competence"].notna()]
    return rows[(rows["k"] == 1) | (rows["mode"] == mode)]


def ktuple_rule(competence: pd.DataFrame, boot: dict[str, np.ndarray], *, metric: str = "exact_match",
                level: float = 0.05, n_single_clusters: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cor. 13 per (checkpoint, mode, k > 1) and its per-(mode, k) summary (module docstring).

    Args:
        competence: the competence table, already restricted to trained k.
        boot: its item-cluster replicates (rows aligned with `competence`'s index).
        metric: the metric compared.
        level: 1 - interval coverage.
        n_single_clusters: bootstrap clusters of the single-skill items; the intervals are expanded for
            that few clusters (`stats.expanded_level`); None: plain percentile intervals.
    """
    coverage = 1.0 - level if n_single_clusters is None else expanded_level(n_single_clusters, 1.0 - level)
    no_interval = None
    if not np.isfinite(coverage):  # one single-skill cluster: only the point comparison, no interval
        coverage, no_interval = 1.0 - level, "one single-skill cluster: no bootstrap interval"
        boot = {**boot, "competence": np.full_like(boot["competence"], np.nan)}
    out, summary = [], []
    for mode in sorted(set(competence.loc[competence["k"] > 1, "mode"])):
        cells = _cells(competence, mode, metric)
        singles = cells[cells["k"] == 1]
        if singles["excess_loss"].nunique() < 2:
            continue
        s_idx = singles.index.to_numpy()
        s_log_d = np.log(singles["excess_loss"].to_numpy(float))
        s_w = singles["n"].to_numpy(float)
        for k, comp in cells[cells["k"] > 1].groupby("k", sort=True):
            at = np.log(k * comp["excess_loss"].to_numpy(float))
            pred = _single_curve(s_log_d, singles["competence"].to_numpy(float), s_w, at)
            reps = np.stack([_single_curve(s_log_d, boot["competence"][s_idx, b], boot["n"][s_idx, b], at)
                             for b in range(boot["n"].shape[1])], axis=1)
            diff_b = boot["competence"][comp.index.to_numpy()] - reps
            lo, hi = percentile_ci(diff_b, axis=1, level=coverage)
            observed = comp["competence"].to_numpy(float)
            reason = np.where(np.isfinite(pred), no_interval,
                              "k' delta outside the single-skill checkpoints' excess-loss range")
            out += [dict(checkpoint_id=c, mode=mode, k=int(k), excess_loss=d, observed=o, predicted=p, diff=o - p,
                         diff_lo=a, diff_hi=z, reason=r)
                    for c, d, o, p, a, z, r in zip(comp["checkpoint_id"], comp["excess_loss"], observed, pred, lo, hi,
                                                   reason)]
            ok = np.isfinite(pred)
            if ok.sum() == 0:
                summary.append(dict(mode=mode, k=int(k), n_checkpoints=0,
                                    reason="no checkpoint with k' delta inside the single-skill range"))
                continue
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN replicates when there is no interval
                m_lo, m_hi = percentile_ci(np.nanmean(diff_b[ok], axis=0), level=coverage)
            summary.append(dict(mode=mode, k=int(k), n_checkpoints=int(ok.sum()),
                                mean_diff=float(np.mean((observed - pred)[ok])), mean_diff_lo=float(m_lo),
                                mean_diff_hi=float(m_hi),
                                consistent=bool(m_lo <= 0.0 <= m_hi) if np.isfinite(m_lo) else None,
                                reason=no_interval))
    return (pd.DataFrame(out, columns=list(COR13_COLUMNS)),
            pd.DataFrame(summary, columns=list(COR13_SUMMARY_COLUMNS)))


def _sse_gap(log_d: np.ndarray, k: np.ndarray, q: np.ndarray, w: np.ndarray) -> tuple[float, np.ndarray]:
    """(SSE(shared) - SSE(separate), shared fitted values)."""
    shared = _decreasing(log_d + np.log(k), q, w)
    separate = np.full(len(q), np.nan)
    for value in np.unique(k):
        at = k == value
        separate[at] = _decreasing(log_d[at], q[at], w[at])
    sse = lambda fit: float(np.nansum(w * (q - fit) ** 2))  # noqa: E731
    return sse(shared) - sse(separate), shared


def shared_curve_test(cells: pd.DataFrame, boot: dict[str, np.ndarray]) -> dict[str, float]:
    """Non-parametric collapse test on one mode's cells (k = 1 and composite, trained k only).

    Returns:
        p_shared_curve and the statistic; NaN with fewer than 2 values of k or 4 cells.
    """
    ok = cells[(cells["n"] > 0) & (cells["excess_loss"] > 0) & cells["competence"].notna()]
    if ok["k"].nunique() < 2 or len(ok) < 4:
        return {"p_shared_curve": float("nan"), "t_shared_curve": float("nan")}
    idx = ok.index.to_numpy()
    log_d, k = np.log(ok["excess_loss"].to_numpy(float)), ok["k"].to_numpy(float)
    q, w = ok["competence"].to_numpy(float), ok["n"].to_numpy(float)
    t_obs, shared = _sse_gap(log_d, k, q, w)
    noise = boot["competence"][idx] - q[:, None]
    t_null = np.array([_sse_gap(log_d, k, shared + noise[:, b], w)[0]
                       for b in range(noise.shape[1]) if np.isfinite(noise[:, b]).all()])
    if len(t_null) < 10:
        return {"p_shared_curve": float("nan"), "t_shared_curve": t_obs}
    p = (np.count_nonzero(t_null >= t_obs - 1e-12 * max(1.0, t_obs)) + 1) / (len(t_null) + 1)
    return {"p_shared_curve": float(p), "t_shared_curve": t_obs}
