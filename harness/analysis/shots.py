"""How much each in-context example helps on held-out (never trained) skill tuples, and whether that grows as loss falls.

Per (checkpoint, mode, k) of held-out composite items and the primary metric: chance-corrected competence
q(s) at s = 0, 1, 2 worked examples in the prompt, and the gains q(1) - q(0) and q(2) - q(1). The same
tuples are asked at every shot count and every checkpoint, so one item-cluster bootstrap draw (skill
tuples resampled within their (k, split) stratum) is shared by both sides of a gain and by all
checkpoints; the gain's percentile interval is expanded for the cell's number of tuples G
(`stats.expanded_level`). Per (mode, k, step): the ordinary least-squares slope of the gain on the
checkpoints' loss, with the interval from the same replicates (a negative slope: lower-loss checkpoints
gain more from an example). The slope is a linear trend: when competence rises from 0 to 1 over the family
the gain is hump-shaped in loss (largest mid-transition), so read it with the per-checkpoint gains. Both
intervals are floored by the items' binomial uncertainty (`_binomial_se`). Without a shots axis in the records every value is NaN with the reason.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

from harness.analysis.cluster_sums import cell_boot, cluster_sums
from harness.analysis.stats import expanded_level, percentile_ci

SHOTS_COLUMNS: tuple[str, ...] = ("checkpoint_id", "mode", "k", "step", "loss", "n_tuples", "q_before", "q_after",
                                  "gain", "gain_lo", "gain_hi", "reason")
"""Per (checkpoint, mode, k, step): step "0->1" or "1->2", competence before and after one more example."""
SHOTS_TREND_COLUMNS: tuple[str, ...] = ("mode", "k", "step", "n_checkpoints", "mean_gain", "mean_gain_lo",
                                        "mean_gain_hi", "slope", "slope_lo", "slope_hi", "reason")
"""Per (mode, k, step): mean gain over checkpoints and the slope of the gain on loss, with intervals."""
STEPS: tuple[tuple[int, int], ...] = ((0, 1), (1, 2))


def shot_sums(records: pd.DataFrame, clusters: pd.DataFrame) -> pd.DataFrame:
    """Cluster sums (`cluster_sums.cluster_sums`) per shot count, with an ``n_shots`` column.

    Args:
        records: prepared records (`schema.prepare_records`).
        clusters: the analysis' cluster table (`bootstrap.assign_clusters`): cluster, k, split, skill_key.
    """
    code = records[["k", "split", "skill_key"]].merge(clusters, on=["k", "split", "skill_key"], how="left")["cluster"]
    shots = pd.to_numeric(records.get("n_shots", pd.Series(0, index=records.index)), errors="coerce").fillna(0)
    frames = [cluster_sums(records[mask.to_numpy()].reset_index(drop=True), code[mask.to_numpy()].to_numpy(np.int64))
              .assign(n_shots=int(s)) for s, mask in ((s, shots == s) for s in sorted(shots.unique()))]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _slope(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """OLS slope of each column of y on x (rows with NaN y dropped per column); NaN with < 3 points."""
    y = np.atleast_2d(y.T).T if y.ndim == 1 else y
    ok = np.isfinite(y)
    out = np.full(y.shape[1], np.nan)
    for b in range(y.shape[1]):
        m = ok[:, b]
        if m.sum() >= 3 and np.ptp(x[m]) > 0:
            out[b] = np.polyfit(x[m], y[m, b], 1)[0]
    return out


def shots_table(sums: pd.DataFrame, weights: np.ndarray, losses: pd.Series, *, metric: str = "exact_match",
                level: float = 0.05) -> tuple[pd.DataFrame, pd.DataFrame, str | None]:
    """Gains per example on held-out tuples, and their trend with loss (module docstring).

    Args:
        sums: `shot_sums` output.
        weights: the analysis' cluster-bootstrap weights (n_boot, n_clusters).
        losses: loss per checkpoint id.
        metric: the metric compared.
        level: 1 - interval coverage.

    Returns:
        (per-checkpoint gains, per-(mode, k, step) trend, reason when nothing could be compared).
    """
    held = sums[(sums["split"] == "heldout") & (sums["metric"] == metric) & (sums["k"] > 1)] if len(sums) else sums
    shots = sorted(set(held["n_shots"])) if len(held) else []
    if len(shots) < 2:
        why = (f"not testable on this run: held-out items were asked with {shots[0]} shots only" if shots
               else "not testable on this run: no held-out composite items")
        return pd.DataFrame(columns=list(SHOTS_COLUMNS)), pd.DataFrame(columns=list(SHOTS_TREND_COLUMNS)), why
    cells, boot = cell_boot(held, ["mode", "k", "n_shots", "checkpoint_id"], weights)
    cells["row"] = np.arange(len(cells))
    n_tuples = held.groupby(["mode", "k", "n_shots"])["cluster"].nunique()
    rows, trend = [], []
    for (mode, k), cell in cells.groupby(["mode", "k"], sort=True):
        for before, after in STEPS:
            a, b = (cell[cell["n_shots"] == s].set_index("checkpoint_id") for s in (before, after))
            ids = sorted(set(a.index) & set(b.index))
            if not ids:
                continue
            step, g = f"{before}->{after}", int(min(n_tuples.get((mode, k, before), 0), n_tuples.get((mode, k, after), 0)))
            cover = expanded_level(g, 1.0 - level)
            q0, q1 = a.loc[ids, "competence"].to_numpy(float), b.loc[ids, "competence"].to_numpy(float)
            reps = boot["competence"][b.loc[ids, "row"].to_numpy(int)] - boot["competence"][a.loc[ids, "row"].to_numpy(int)]
            lo, hi = percentile_ci(reps, level=cover, axis=1) if np.isfinite(cover) else (np.full(len(ids), np.nan),) * 2
            se = _binomial_se(a.loc[ids], b.loc[ids])
            lo, hi = _widen(lo, hi, q1 - q0, se, cover)
            loss = losses.reindex(ids).to_numpy(float)
            reason = None if np.isfinite(cover) else "one held-out tuple: no clustered interval"
            rows += [dict(checkpoint_id=c, mode=mode, k=int(k), step=step, loss=l, n_tuples=g, q_before=x, q_after=y,
                          gain=y - x, gain_lo=u, gain_hi=v, reason=reason if np.isfinite(y - x) else "no scored items")
                     for c, l, x, y, u, v in zip(ids, loss, q0, q1, lo, hi)]
            trend.append(_trend(mode, int(k), step, loss, q1 - q0, reps, cover, se))
    return (pd.DataFrame(rows, columns=list(SHOTS_COLUMNS)), pd.DataFrame(trend, columns=list(SHOTS_TREND_COLUMNS)),
            None)


def _binomial_se(before: pd.DataFrame, after: pd.DataFrame) -> np.ndarray:
    """Standard error of each gain from Jeffreys-smoothed binomial rates of its two cells (items independent).

    Near 0 or 1 every bootstrap replicate of a cell can be equal (48 items all right), so a percentile
    interval has zero width though the cell's rate is uncertain; this se is the floor (as in
    `paired.cluster_mean_test`) that keeps the item count's uncertainty (without it the gain interval covered
    0.89 of a nominal 0.95 and the slope interval excluded a true 0 in 0.11 of cells).
    """
    def var(cell: pd.DataFrame) -> np.ndarray:
        n, g = cell["n"].to_numpy(float), cell["chance"].to_numpy(float)
        p = (cell["total"].to_numpy(float) + 0.5) / (n + 1.0)
        with np.errstate(all="ignore"):
            return p * (1.0 - p) / np.where(n > 0, n, np.nan) / (1.0 - g) ** 2
    return np.sqrt(var(before) + var(after))


def _widen(lo: np.ndarray | float, hi: np.ndarray | float, estimate: np.ndarray | float, se: np.ndarray | float,
           cover: float) -> tuple[np.ndarray, np.ndarray]:
    """The percentile interval widened to at least estimate -/+ z se (z the normal quantile of `cover`)."""
    z = float(norm.ppf(0.5 + cover / 2.0)) if np.isfinite(cover) else np.nan
    return np.fmin(lo, estimate - z * se), np.fmax(hi, estimate + z * se)


def _trend(mode: str, k: int, step: str, loss: np.ndarray, gain: np.ndarray, reps: np.ndarray,
           cover: float, se: np.ndarray) -> dict:
    """Mean gain and slope of gain on loss over checkpoints with both a loss and a gain."""
    ok = np.isfinite(loss) & np.isfinite(gain)
    out = dict(mode=mode, k=k, step=step, n_checkpoints=int(ok.sum()))
    if not ok.any():
        return {**out, "reason": "no checkpoint with a loss and a gain"}
    with np.errstate(all="ignore"):
        mean_reps = np.nanmean(reps[ok], axis=0) if np.isfinite(cover) else np.full(reps.shape[1], np.nan)
    m_lo, m_hi = percentile_ci(mean_reps, level=cover) if np.isfinite(cover) else (np.nan, np.nan)
    slope = float(_slope(loss[ok], gain[ok])[0])
    s_lo, s_hi = percentile_ci(_slope(loss[ok], reps[ok]), level=cover) if np.isfinite(cover) else (np.nan, np.nan)
    x = loss[ok] - loss[ok].mean()
    with np.errstate(all="ignore"):  # the slope's se from the gains' binomial se (checkpoints independent)
        s_lo, s_hi = _widen(s_lo, s_hi, slope, np.sqrt(np.sum((x / np.sum(x * x)) ** 2 * se[ok] ** 2)), cover)
    m_lo, m_hi = _widen(m_lo, m_hi, float(np.mean(gain[ok])), np.sqrt(np.sum(se[ok] ** 2)) / ok.sum(), cover)
    reason = None if np.isfinite(slope) else "fewer than 3 checkpoints with distinct losses: no slope"
    return {**out, "mean_gain": float(np.mean(gain[ok])), "mean_gain_lo": m_lo, "mean_gain_hi": m_hi,
            "slope": slope, "slope_lo": s_lo, "slope_hi": s_hi, "reason": reason}
