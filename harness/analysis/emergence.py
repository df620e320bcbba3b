"""Emergence detection per (mode, k, metric): above-chance tests, sharpness, breakpoint and the mirage check.

* Above chance: exact one-sided binomial P(X >= s | n, g) per checkpoint (binary metrics only; g is
  the mean chance of the cell's items), Holm-corrected across the checkpoints of the cell.
* Sharpness: the fraction of the curve's total change that happens within the steepest window of
  20% of the x range (piecewise-linear between checkpoints): 0.2 for a straight line, 1.0 for a
  step; x = log excess loss (raw loss when no excess loss is available). Curves that change by
  less than 0.1 (competence) have no sharpness (NaN + reason).
* Breakpoint: the loss eta of the threshold curve (see `curves`). Its interval is the union of two
  ranges: the percentile interval of eta refitted (on its grid) to each item-cluster bootstrap
  replicate of the counts, expanded for the cell's number of clusters (Hesterberg 2015,
  `stats.expanded_level`), and the two checkpoints that bracket the point estimate. Between two
  checkpoints only the assumed shape of the rise locates eta; under a true breakpoint with items of
  unequal difficulty that shape is wrong and eta comes out 0.002-0.04 too high in the simulation,
  so the plain percentile interval held the true breakpoint in only 0.85-0.89 of simulated cells
  (0.93-1.00 with the expansion and the bracket; benchmarks/calibration/breakpoint.py). There is none
  (NaN + reason) when competence is 0 (or at chance) or 1 at every checkpoint, when the fitted curve
  never leaves chance, or when eta lands on the top of its search range (competence does not fall
  to chance as the loss rises, e.g. it grows with loss: the data do not locate a breakpoint).
* Mirage check (Schaeffer et al. 2023): does the cell's continuous metric (mean gold log-prob;
  partial credit when log-probs are missing) have a breakpoint, or is it a smooth function of the
  loss? Two 3-parameter least-squares fits of the per-checkpoint means against raw loss x:
  smooth y = c0 + c1 (exp(r u) - 1) / r (u = x rescaled to [0, 1]; r free: linear at r = 0, convex or
  concave otherwise) and threshold y = c0 + c1 max(0, eta - x) (flat above the loss eta, linear
  below), eta restricted to the exact-match breakpoint's interval when there is one (the question is
  whether the continuous metric also breaks where exact match jumps, not anywhere: a plateau of
  near-random checkpoints at the top of the loss range is a kink too). D = RSS(smooth) - RSS(threshold). Its null distribution is cluster-robust: the smooth fit
  plus each item-cluster bootstrap replicate's deviation of the means from the observed ones (one
  draw of skill tuples shared by all checkpoints, as the same items are scored at every one);
  p = (#{D* >= D} + 1) / (B + 1). A jump "survives" when exact match leaves chance (it has a
  breakpoint, see above) and the continuous metric's breakpoint test rejects the smooth curve at
  the test level; it is a "mirage" when the continuous metric is fitted as well by a smooth curve.
  The verdict does not drift as checkpoints are added at high loss, unlike the window sharpness it
  replaced (which scored one logistic curve 0.31 to 0.89 as the loss range grew); the sharpness
  columns are kept as descriptions only. Calibration: benchmarks/bench_calibration.py.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import optimize

from harness.analysis.curves import eta_range, threshold_competence, threshold_grid
from harness.records import BINARY_METRICS, RATE_METRICS
from harness.analysis.stats import above_chance_pvalue, expanded_level, floor_or_ceiling, holm, percentile_ci

ABOVE_COLUMNS: tuple[str, ...] = ("checkpoint_id", "mode", "k", "metric", "successes", "n", "chance", "p_value",
                                  "p_holm", "above_chance", "reason")
EMERGENCE_COLUMNS: tuple[str, ...] = (
    "mode", "k", "metric", "n_checkpoints", "n_above_chance", "onset_loss", "sharpness", "sharpness_axis",
    "breakpoint_loss", "breakpoint_lo", "breakpoint_hi", "breakpoint_in_range", "reason",
)
MIRAGE_COLUMNS: tuple[str, ...] = ("mode", "k", "sharpness_exact_match", "sharpness_partial_credit",
                                   "sharpness_gold_logprob", "reference", "p_breakpoint", "eta_breakpoint",
                                   "rss_smooth", "rss_threshold", "verdict")
SHARP = 0.5
"""Sharpness at or above which a curve counts as a jump."""
CELL = ["mode", "k", "metric"]


def window_sharpness(x: np.ndarray, y: np.ndarray, window: float = 0.2, min_range: float = 0.1) -> float:
    """Share of a curve's total change that happens inside its steepest window (see module docstring).

    Improvement is read toward lower x (lower loss); points with equal x are averaged.

    Returns:
        A value in [window, 1] for a monotone curve; NaN with fewer than 3 distinct x or a range
        of y below `min_range`.
    """
    frame = pd.DataFrame({"x": x, "y": y}).replace([np.inf, -np.inf], np.nan).dropna()
    frame = frame.groupby("x", sort=True)["y"].mean()
    if len(frame) < 3:
        return float("nan")
    xs, ys = frame.index.to_numpy(float), frame.to_numpy(float)
    y_range = ys.max() - ys.min()
    if not y_range > 0 or y_range < min_range:
        return float("nan")
    u = (xs - xs[0]) / (xs[-1] - xs[0])
    start = np.linspace(0.0, 1.0 - window, 201)
    rise = np.interp(start, u, ys) - np.interp(start + window, u, ys)
    return float(np.clip(rise.max() / y_range, 0.0, 1.0))


_RATES = np.concatenate([-np.geomspace(12.0, 0.05, 24), [0.0], np.geomspace(0.05, 12.0, 24)])
"""Grid of the smooth form's curvature r (r = 0 is a straight line)."""


def _smooth_residual(x: np.ndarray, r: float) -> np.ndarray:
    """Residual projection I - H of the smooth form with curvature r."""
    u = (x - x.min()) / (x.max() - x.min())
    design = np.stack([np.ones_like(x), u if r == 0 else np.expm1(r * u) / r], axis=1)
    return np.eye(len(x)) - design @ np.linalg.pinv(design)


def _residual_makers(x: np.ndarray, window: tuple[float, float] | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Residual projections (I - H) of the smooth forms (one per r) and threshold forms (one per eta), and the etas."""
    ones = np.ones_like(x)
    etas = np.unique(np.concatenate([np.linspace(np.sort(x)[1], x.max(), 60), x[(x > np.sort(x)[1])]]))
    if window is not None and np.all(np.isfinite(window)):
        lo, hi = max(window[0], np.sort(x)[1]), min(window[1], x.max())
        if hi > lo:
            etas = np.unique(np.concatenate([np.linspace(lo, hi, 30), etas[(etas >= lo) & (etas <= hi)]]))
    hinge = [np.stack([ones, np.maximum(0.0, eta - x)], axis=1) for eta in etas]
    hinge_r = np.stack([np.eye(len(x)) - d @ np.linalg.pinv(d) for d in hinge])
    return np.stack([_smooth_residual(x, r) for r in _RATES]), hinge_r, etas


def _refine_rate(x: np.ndarray, y: np.ndarray, rss_grid: np.ndarray) -> float:
    """The smooth form's best curvature r, refined between the grid neighbours of the best grid point.

    The null replicates are generated from the fitted smooth curve, whose r is then in the grid the
    replicates are fitted on; a grid-only fit of the observed curve would leave it a misfit the
    replicates never have (with eta free over the whole loss range this rejected a smooth truth in
    half the simulated runs at a wide loss range).
    """
    i = int(np.argmin(rss_grid))
    lo, hi = _RATES[max(i - 1, 0)], _RATES[min(i + 1, len(_RATES) - 1)]
    if hi <= lo:
        return float(_RATES[i])

    def rss(r: float) -> float:
        return float(np.sum((_smooth_residual(x, r) @ y) ** 2))

    res = optimize.minimize_scalar(rss, bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
    return float(res.x) if res.fun < rss_grid[i] else float(_RATES[i])


def breakpoint_test(x: np.ndarray, y: np.ndarray, y_boot: np.ndarray,
                    window: tuple[float, float] | None = None) -> dict[str, float]:
    """Smooth-versus-threshold test of one continuous curve (see the module docstring, mirage check).

    Args:
        x: loss per checkpoint.
        y: the metric's mean per checkpoint.
        y_boot: (n_checkpoints, B) item-cluster bootstrap replicates of the means (shared draws).
        window: losses the threshold's eta may take (the exact-match breakpoint's interval); None: any.

    Returns:
        p_breakpoint, eta_breakpoint (the threshold fit's eta), rss_smooth, rss_threshold; NaN
        with fewer than 5 checkpoints.
    """
    x, y, y_boot = np.asarray(x, float), np.asarray(y, float), np.asarray(y_boot, float)
    ok = np.isfinite(x) & np.isfinite(y)
    out = dict.fromkeys(("p_breakpoint", "eta_breakpoint", "rss_smooth", "rss_threshold"), float("nan"))
    if len(np.unique(x[ok])) < 5:
        return out
    x, y, y_boot = x[ok], y[ok], y_boot[ok]
    r_smooth, r_hinge, etas = _residual_makers(x, window)
    rss_grid = (np.einsum("gij,j->gi", r_smooth, y) ** 2).sum(axis=1)
    best = _smooth_residual(x, _refine_rate(x, y, rss_grid))
    r_smooth = np.concatenate([r_smooth, best[None]])
    rss_s = (np.einsum("gij,j->gi", r_smooth, y) ** 2).sum(axis=1)
    rss_t = (np.einsum("gij,j->gi", r_hinge, y) ** 2).sum(axis=1)
    fitted = y - best @ y
    noise = y_boot - y[:, None]
    keep = np.isfinite(noise).all(axis=0)
    null = fitted[:, None] + noise[:, keep]
    d_null = ((np.einsum("gij,jb->gib", r_smooth, null) ** 2).sum(axis=1).min(axis=0)
              - (np.einsum("gij,jb->gib", r_hinge, null) ** 2).sum(axis=1).min(axis=0))
    d_obs = rss_s.min() - rss_t.min()
    p = (np.count_nonzero(d_null >= d_obs - 1e-12 * max(1.0, abs(d_obs))) + 1) / (keep.sum() + 1)
    return {"p_breakpoint": float(p) if keep.sum() >= 10 else float("nan"),
            "eta_breakpoint": float(etas[int(np.argmin(rss_t))]), "rss_smooth": float(rss_s.min()),
            "rss_threshold": float(rss_t.min())}


def above_chance_table(competence: pd.DataFrame, level: float = 0.05) -> pd.DataFrame:
    """Per-checkpoint exact binomial tests against chance, Holm-corrected within each cell."""
    rows = competence[competence["metric"].isin(BINARY_METRICS)].copy()
    rows["p_value"] = above_chance_pvalue(rows["successes"], rows["n"], rows["chance"])
    rows["p_holm"] = rows.groupby(CELL)["p_value"].transform(lambda p: holm(p.to_numpy()))
    rows["above_chance"] = np.where(np.isfinite(rows["p_holm"]), rows["p_holm"] < level, None)
    rows["reason"] = np.where(np.isfinite(rows["p_value"]), None, "no scored items or no chance level")
    return rows[list(ABOVE_COLUMNS)].reset_index(drop=True)


def _axis(rows: pd.DataFrame) -> tuple[np.ndarray, str]:
    if rows["excess_loss"].notna().sum() >= 3:
        return np.log(rows["excess_loss"].to_numpy(float)), "log_excess_loss"
    return rows["loss"].to_numpy(float), "loss"


def bracket_interval(lo: float, hi: float, point: float, loss: np.ndarray) -> tuple[float, float]:
    """The interval [lo, hi] widened to hold the checkpoints (losses) on either side of `point`.

    The data locate a breakpoint only to the checkpoints around it; where `point` lies beyond every
    checkpoint on one side, that side keeps its bootstrap end.
    """
    below, above = loss[loss <= point], loss[loss >= point]
    if np.isfinite(lo) and len(below):
        lo = min(lo, float(below.max()))
    if np.isfinite(hi) and len(above):
        hi = max(hi, float(above.min()))
    return lo, hi


def _breakpoint(rows: pd.DataFrame, boot: dict[str, np.ndarray], n_clusters: int | None = None,
                bracket: bool = True) -> tuple[float, float, float, str | None]:
    """Threshold-form breakpoint and its interval; NaN where the fitted curve never leaves chance.

    A fit whose competence at the lowest observed loss is below 0.05 has no breakpoint inside the
    data (the rate c collapsed); such bootstrap replicates are NaN too.

    Args:
        rows: the cell's competence rows.
        boot: the competence table's bootstrap replicates.
        n_clusters: item clusters behind the cell (the percentile level is expanded for them); None: 0.95.
        bracket: widen the interval to the checkpoints around the estimate (see the module docstring);
            False gives the bootstrap range alone (the interval before calibration; for the study).
    """
    ok = (rows["n"] > 0) & np.isfinite(rows["chance"]) & np.isfinite(rows["loss"])
    idx = rows.index[ok].to_numpy()
    if len(idx) < 3:
        return np.nan, np.nan, np.nan, "fewer than 3 checkpoints with counts and loss"
    loss = rows.loc[idx, "loss"].to_numpy(float)
    chance = rows.loc[idx, "chance"].to_numpy(float)
    counts = rows.loc[idx, "successes"].to_numpy(float)[None], rows.loc[idx, "n"].to_numpy(float)[None]
    if flat := floor_or_ceiling(counts[0][0], counts[1][0], chance, "no breakpoint"):
        return np.nan, np.nan, np.nan, flat
    point, rate = threshold_grid(loss, *counts, chance[None])
    if point[0] >= eta_range(loss)[1] - 1e-9:
        return np.nan, np.nan, np.nan, ("breakpoint on the top of its search range, above every observed loss: "
                                        "competence does not fall to chance as the loss rises, so the data do "
                                        "not locate it")
    g = np.broadcast_to(chance[:, None], boot["n"][idx].shape).T
    eta, rates = threshold_grid(loss, boot["total"][idx].T, boot["n"][idx].T, g)
    rises = threshold_competence(eta, rates, loss.min()) >= 0.05
    level = expanded_level(n_clusters) if n_clusters is not None and n_clusters >= 2 else 0.95
    lo, hi = percentile_ci(np.where(rises, eta, np.nan), level)
    if threshold_competence(point[0], rate[0], loss.min()) < 0.05:
        return np.nan, lo, hi, "competence never leaves chance: no breakpoint"
    if bracket:
        lo, hi = bracket_interval(lo, hi, float(point[0]), loss)
    return float(point[0]), float(lo), float(hi), None


def clusters_per_cell(sums: pd.DataFrame) -> dict[tuple, int]:
    """Distinct item clusters (skill tuples) per (mode, k, metric) of the cluster-sum table."""
    return {key: int(v) for key, v in sums.groupby(CELL)["cluster"].nunique().items()}


def emergence_table(competence: pd.DataFrame, boot: dict[str, np.ndarray], above: pd.DataFrame,
                    n_clusters: dict[tuple, int] | None = None) -> pd.DataFrame:
    """One row per (mode, k, metric) of a rate metric; `boot` rows align with `competence` rows.

    Args:
        n_clusters: item clusters per (mode, k, metric) (see `clusters_per_cell`), for the breakpoint
            interval's expanded level; None: plain 95% percentile intervals (still bracketed).
    """
    out = []
    counts = above.assign(hit=above["above_chance"].eq(True)).groupby(CELL)["hit"].sum()
    onset = above[above["above_chance"].eq(True)].merge(competence[["checkpoint_id", *CELL, "loss"]],
                                                         on=["checkpoint_id", *CELL])
    onset = onset.groupby(CELL)["loss"].max()
    for key, rows in competence[competence["metric"].isin(RATE_METRICS)].groupby(CELL, sort=True):
        x, axis = _axis(rows)
        sharp = window_sharpness(x, rows["competence"].to_numpy(float))
        eta, lo, hi, why = _breakpoint(rows, boot, None if n_clusters is None else n_clusters.get(key))
        in_range = bool(rows["loss"].min() <= eta <= rows["loss"].max()) if np.isfinite(eta) else None
        flat = None if np.isfinite(sharp) else "sharpness: fewer than 3 checkpoints or competence varies by < 0.1"
        reason = "; ".join(r for r in (flat, why) if r) or None
        out.append(dict(zip(CELL, key), n_checkpoints=int((rows["n"] > 0).sum()),
                        n_above_chance=int(counts.get(key, 0)) if key[2] in BINARY_METRICS else None,
                        onset_loss=onset.get(key, np.nan), sharpness=sharp, sharpness_axis=axis,
                        breakpoint_loss=eta, breakpoint_lo=lo, breakpoint_hi=hi,
                        breakpoint_in_range=in_range, reason=reason))
    table = pd.DataFrame(out, columns=list(EMERGENCE_COLUMNS))
    table["n_above_chance"] = table["n_above_chance"].astype("Int64")
    return table


def _verdict(em_rises: bool | None, reference: str | None, test: dict[str, float], level: float) -> str:
    if em_rises is None:
        return "no exact-match curve for this cell"
    if not em_rises:
        return "no exact-match jump: exact match never leaves chance (or is 1 throughout): nothing to explain"
    if reference is None:
        return "no continuous metric recorded for these items; the mirage check cannot run"
    p = test["p_breakpoint"]
    if not np.isfinite(p):
        return f"the {reference} breakpoint test could not run (fewer than 5 checkpoints or bootstrap replicates)"
    if p < level:
        return (f"jump survives under {reference}: it has a breakpoint at loss {test['eta_breakpoint']:.3f} that a "
                f"smooth curve does not fit (cluster-bootstrap p = {p:.3g})")
    return (f"mirage: exact match jumps, but {reference} is fitted as well by a smooth curve of the loss "
            f"(breakpoint test p = {p:.3g})")


def mirage_table(competence: pd.DataFrame, boot: dict[str, np.ndarray] | None = None,
                 emergence: pd.DataFrame | None = None, level: float = 0.05) -> pd.DataFrame:
    """Per (mode, k): the breakpoint test of the continuous metric and the mirage verdict (module docstring).

    Args:
        competence: the competence table (all metrics).
        boot: its item-cluster bootstrap replicates (rows aligned); None skips the test.
        emergence: the emergence table; exact match "jumps" when its breakpoint exists.
        level: test level.
    """
    out = []
    metrics = ("exact_match", "partial_credit", "gold_logprob")
    rows = competence[competence["metric"].isin(metrics)]
    em_rows = [] if emergence is None else emergence[emergence["metric"] == "exact_match"].to_dict("records")
    rises = {(r["mode"], r["k"]): bool(np.isfinite(r["breakpoint_loss"])) for r in em_rows}
    windows = {(r["mode"], r["k"]): (r["breakpoint_lo"], r["breakpoint_hi"]) for r in em_rows
               if np.isfinite(r["breakpoint_loss"])}
    for (mode, k), cell in rows.groupby(["mode", "k"], sort=True):
        sharp = {}
        for metric in metrics:
            m = cell[cell["metric"] == metric]
            if m.empty:
                continue
            floor = 0.1 if metric == "exact_match" else 0.0
            value = window_sharpness(m["loss"].to_numpy(float), m["mean"].to_numpy(float), min_range=floor)
            flat = metric != "exact_match" and np.isnan(value) and m["mean"].notna().sum() >= 3
            sharp[metric] = 0.0 if flat else value
        have = [m for m in ("gold_logprob", "partial_credit") if (cell["metric"] == m).any()]
        reference = have[0] if have else None
        test = dict.fromkeys(("p_breakpoint", "eta_breakpoint", "rss_smooth", "rss_threshold"), float("nan"))
        if reference is not None and boot is not None:
            ref = cell[cell["metric"] == reference].sort_values("loss")
            test = breakpoint_test(ref["loss"].to_numpy(float), ref["mean"].to_numpy(float),
                                   boot["mean"][ref.index.to_numpy()], windows.get((mode, k)))
        em = rises.get((mode, k)) if (cell["metric"] == "exact_match").any() else None
        if em is None and (cell["metric"] == "exact_match").any() and emergence is None:
            em = bool(np.isfinite(sharp.get("exact_match", np.nan)))
        out.append({"mode": mode, "k": k, **{f"sharpness_{m}": sharp.get(m, np.nan) for m in metrics},
                    "reference": reference, **test, "verdict": _verdict(em, reference, test, level)})
    return pd.DataFrame(out, columns=list(MIRAGE_COLUMNS))
