"""The slingshot test (Arora-Goyal): on held-out tuples, q_2k(delta) = q_k(2 delta).

A&G's Cor. 13 makes competence a function of k times the excess loss, so halving the excess loss lets a
model do on 2k-tuples what a model at twice its excess loss did on k-tuples, even though it never saw
those 2k-tuples. Per composite mode and each k >= 2 with 2k <= the largest tested k, on held-out items
of the primary metric asked with the fewest shots:

- the k-curve: chance-corrected competence q_k of every checkpoint with a positive excess loss, made
  non-increasing in delta by isotonic regression (weighted by items) and interpolated in log delta on
  the complementary log-log scale (`cor13._single_curve`); NaN outside the checkpoints' delta range;
- per checkpoint c: diff_c = q_2k(c) observed - q_k-curve(2 delta_c), where 2 delta_c is inside the range;
- the statistic: the mean of diff_c over those checkpoints (every checkpoint weighs the same).

The interval resamples skill tuples (the clusters) with the analysis' shared bootstrap weights: one draw
resamples the k- and 2k-tuples together, and the same draw serves every checkpoint and both sides. The
percentile interval is expanded for G = the smaller of the two tuple counts (`stats.expanded_level`).
Verdict: "consistent with the slingshot" when the interval holds 0, "2k lags" when it lies below 0,
"2k leads" when above; "not testable: <why>" otherwise. Not testable: no held-out cells at k and 2k;
every held-out tuple at k or 2k lies inside a seen tuple of larger k in the same run (so it occurred in
training, within a larger piece: such tuples are dropped first, and the count is reported); 2k beyond
the trained k while the records cannot tell format failures from skill failures (no ``parts_predicted``);
competence at the floor (or 1) at both k and 2k everywhere; fewer than 2 checkpoints with 2 delta inside
the k-curve's range.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from harness.analysis.cluster_sums import cell_boot
from harness.analysis.cor13 import _single_curve
from harness.analysis.stats import CEILING, FLOOR, expanded_level, percentile_ci

SLINGSHOT_COLUMNS: tuple[str, ...] = ("checkpoint_id", "mode", "k", "k2", "excess_loss", "observed_2k",
                                      "predicted_k_at_2delta", "diff", "reason")
"""Per (checkpoint, mode, k): observed held-out q_2k at delta against the k-curve at 2 delta."""
SLINGSHOT_SUMMARY_COLUMNS: tuple[str, ...] = ("mode", "k", "k2", "n_checkpoints", "n_tuples_k", "n_tuples_2k",
                                              "n_dropped_inside_seen", "format_share_2k", "mean_diff",
                                              "mean_diff_lo", "mean_diff_hi", "verdict", "reason")
"""Per (mode, k): mean difference over checkpoints with its interval and the verdict."""


def inside_seen(clusters: pd.DataFrame, trained_ks: tuple[int, ...] | None = None) -> set[str]:
    """Skill keys of held-out tuples contained (as multisets) in a seen tuple of larger, trained k in the same run.

    Such a tuple occurred in training inside a larger piece, so it is not unseen.

    Args:
        clusters: cluster table with k, split and skill_key ("+"-joined sorted names).
        trained_ks: k of the training pieces ("seen" beyond them was never trained); None: every k.
    """
    is_seen = (clusters["split"] == "seen") & (clusters["k"].isin(trained_ks) if trained_ks else True)
    seen = [(int(k), key.split("+")) for k, key in clusters.loc[is_seen, ["k", "skill_key"]]
            .drop_duplicates().itertuples(index=False)]
    out = set()
    for k, key in clusters.loc[clusters["split"] == "heldout", ["k", "skill_key"]].drop_duplicates().itertuples(index=False):
        names = pd.Series(key.split("+")).value_counts()
        if any(big > k and all(parts.count(n) >= c for n, c in names.items()) for big, parts in seen):
            out.add(key)
    return out


def verdict(lo: float, hi: float) -> str:
    """The verdict of a mean-difference interval (module docstring)."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "not testable: no interval"
    return "2k lags" if hi < 0 else "2k leads" if lo > 0 else "consistent with the slingshot"


def slingshot_test(sums: pd.DataFrame, weights: np.ndarray, excess: pd.Series, *, metric: str = "exact_match",
                   level: float = 0.05, trained_ks: tuple[int, ...] | None = None,
                   format_share: dict[tuple[str, int], float] | None = None,
                   drop: set[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame, str | None]:
    """The slingshot comparison per (checkpoint, mode, k) and its per-(mode, k) verdict (module docstring).

    Args:
        sums: cluster sums of one shot count (`shots.shot_sums` rows or `cluster_sums.cluster_sums`), with the
            cluster table's ``skill_key`` merged in when `drop` is given.
        weights: the shared cluster-bootstrap weights (n_boot, n_clusters).
        excess: excess loss per checkpoint id.
        metric: the metric compared.
        level: 1 - interval coverage.
        trained_ks: k of the training pieces; None: every k counts as trained.
        format_share: per (mode, k) the share of held-out failures that are format failures (NaN: unknown).
        drop: skill keys of held-out tuples that occurred in training inside a larger piece (`inside_seen`).

    Returns:
        (per-checkpoint rows, per-(mode, k) summary, reason when no pair (k, 2k) exists at all).
    """
    held = sums[(sums["split"] == "heldout") & (sums["metric"] == metric) & (sums["k"] > 1)]
    dropped = held[held["skill_key"].isin(drop or set())] if "skill_key" in held else held.iloc[:0]
    held = held.drop(index=dropped.index)
    all_ks = sorted(set(sums.loc[sums["k"] > 1, "k"].astype(int)))
    pairs = [(m, k) for m in sorted(set(sums.loc[sums["k"] > 1, "mode"])) for k in all_ks if 2 * k <= max(all_ks)]
    if not pairs:
        return (pd.DataFrame(columns=list(SLINGSHOT_COLUMNS)), pd.DataFrame(columns=list(SLINGSHOT_SUMMARY_COLUMNS)),
                f"not testable on this run: needs held-out cells at k and 2k (tested k: {all_ks or 'none'})")
    cells, boot = cell_boot(held, ["mode", "k", "checkpoint_id"], weights) if len(held) else (held, {})
    if len(cells):
        cells["delta"] = cells["checkpoint_id"].map(excess).astype(float)
    tuples = held.groupby(["mode", "k"])["cluster"].nunique()
    n_drop = dropped.groupby(["mode", "k"])["skill_key"].nunique()
    rows, summary = [], []
    for mode, k in pairs:
        base = dict(mode=mode, k=k, k2=2 * k, n_tuples_k=int(tuples.get((mode, k), 0)),
                    n_tuples_2k=int(tuples.get((mode, 2 * k), 0)),
                    n_dropped_inside_seen=int(n_drop.get((mode, k), 0) + n_drop.get((mode, 2 * k), 0)),
                    format_share_2k=(format_share or {}).get((mode, 2 * k), np.nan))
        why = _untestable(base, trained_ks)
        out, row = _pair(cells, boot, base, level) if why is None else ([], dict(base, n_checkpoints=0))
        rows += out
        if why is None:
            why = row.pop("why", None)
        summary.append(dict(row, verdict=f"not testable: {why}" if why else verdict(row["mean_diff_lo"],
                                                                                    row["mean_diff_hi"]), reason=why))
    return (pd.DataFrame(rows, columns=list(SLINGSHOT_COLUMNS)),
            pd.DataFrame(summary, columns=list(SLINGSHOT_SUMMARY_COLUMNS)), None)


def _untestable(base: dict, trained_ks: tuple[int, ...] | None) -> str | None:
    """Why a (mode, k) pair cannot be tested before looking at competence; None when it can."""
    k, k2 = base["k"], base["k2"]
    if base["n_tuples_k"] == 0 or base["n_tuples_2k"] == 0:
        missing = k if base["n_tuples_k"] == 0 else k2
        if base["n_dropped_inside_seen"]:
            return f"every held-out tuple at k = {missing} lies inside a seen larger tuple (it occurred in training)"
        return f"no held-out tuples at k = {missing}"
    if trained_ks and k2 > max(trained_ks) and not np.isfinite(base["format_share_2k"]):
        return (f"2k = {k2} lies beyond the trained k (up to {max(trained_ks)}) and these records cannot tell "
                "format failures from skill failures (no parts_predicted)")
    return None


def _pair(cells: pd.DataFrame, boot: dict[str, np.ndarray], base: dict, level: float) -> tuple[list[dict], dict]:
    """Rows and summary of one testable (mode, k) pair; the summary's "why" says why there is no verdict."""
    mode, k, k2 = base["mode"], base["k"], base["k2"]
    low = cells[(cells["mode"] == mode) & (cells["k"] == k) & (cells["n"] > 0) & (cells["delta"] > 0)]
    high = cells[(cells["mode"] == mode) & (cells["k"] == k2) & (cells["n"] > 0) & (cells["delta"] > 0)]
    low = low[np.isfinite(low["competence"])]
    if low["delta"].nunique() < 2 or high.empty:
        return [], dict(base, n_checkpoints=0, why="fewer than 2 checkpoints with a positive excess loss")
    log_d, w = np.log(low["delta"].to_numpy(float)), low["n"].to_numpy(float)
    at = np.log(2.0 * high["delta"].to_numpy(float))
    pred = _single_curve(log_d, low["competence"].to_numpy(float), w, at)
    reps = np.stack([_single_curve(log_d, boot["competence"][low.index.to_numpy(), b], boot["n"][low.index.to_numpy(), b], at)
                     for b in range(boot["n"].shape[1])], axis=1)
    observed = high["competence"].to_numpy(float)
    diff_b = boot["competence"][high.index.to_numpy()] - reps
    inside = np.isfinite(pred) & np.isfinite(observed)
    rows = [dict(checkpoint_id=c, mode=mode, k=k, k2=k2, excess_loss=d, observed_2k=o, predicted_k_at_2delta=p,
                 diff=o - p, reason=None if ok else "2 delta outside the k-curve's excess-loss range")
            for c, d, o, p, ok in zip(high["checkpoint_id"], high["delta"], observed, pred, inside)]
    used = np.concatenate([observed[inside], pred[inside]])
    why = None
    if inside.sum() < 2:
        why = "fewer than 2 checkpoints whose 2 delta lies inside the k-curve's range"
    elif np.all(used <= FLOOR) or np.all(used >= CEILING):
        why = f"competence is {'0' if np.all(used <= FLOOR) else '1'} at both k = {k} and 2k = {k2} at every compared checkpoint"
    cover = expanded_level(min(base["n_tuples_k"], base["n_tuples_2k"]), 1.0 - level)
    lo = hi = np.nan
    if why is None and np.isfinite(cover):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # replicates where a curve has no value
            lo, hi = percentile_ci(np.nanmean(diff_b[inside], axis=0), level=cover)
    if why is None and not (np.isfinite(lo) and np.isfinite(hi)):
        why = ("fewer than 2 held-out tuples at k or 2k: no clustered interval" if not np.isfinite(cover)
               else "fewer than half of the bootstrap replicates give a difference: no interval")
    mean = float(np.mean((observed - pred)[inside])) if inside.any() else np.nan
    return rows, dict(base, n_checkpoints=int(inside.sum()), mean_diff=mean, mean_diff_lo=float(lo),
                      mean_diff_hi=float(hi), why=why)
