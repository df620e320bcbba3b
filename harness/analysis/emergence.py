"""Emergence detection per (mode, k, metric): above-chance tests, sharpness, breakpoint and the mirage check.

* Above chance: exact one-sided binomial P(X >= s | n, g) per checkpoint (binary metrics only; g is
  the mean chance of the cell's items), Holm-corrected across the checkpoints of the cell.
* Sharpness: the fraction of the curve's total change that happens within the steepest window of
  20% of the x range (piecewise-linear between checkpoints): 0.2 for a straight line, 1.0 for a
  step; x = log excess loss (raw loss when no excess loss is available). Curves that change by
  less than 0.1 (competence) have no sharpness (NaN + reason).
* Breakpoint: the loss eta of the threshold curve (see `curves`), with a percentile interval from
  refitting it (on its grid) to each item-cluster bootstrap replicate of the counts. There is none
  (NaN + reason) when competence is 0 (or at chance) or 1 at every checkpoint, when the fitted curve
  never leaves chance, or when eta lands on the top of its search range (competence does not fall
  to chance as the loss rises, e.g. it grows with loss: the data do not locate a breakpoint).
* Mirage check (Schaeffer et al. 2023): the same cell's exact match, partial credit and mean gold
  log-prob, each against raw loss (a linear axis, because on a log-excess axis a log-prob that is
  linear in loss is exponential and would look sharp). The reference continuous metric is the
  gold log-prob (partial credit when log-probs are missing: partial credit still thresholds each
  part, so it is reported but not trusted first). A jump "survives" when the reference is also
  sharp (>= 0.5); it is a "mirage" when exact match is sharp and the reference is not.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from harness.analysis.curves import eta_range, threshold_competence, threshold_grid
from harness.analysis.schema import BINARY_METRICS, RATE_METRICS
from harness.analysis.stats import above_chance_pvalue, floor_or_ceiling, holm, percentile_ci

ABOVE_COLUMNS: tuple[str, ...] = ("checkpoint_id", "mode", "k", "metric", "successes", "n", "chance", "p_value",
                                  "p_holm", "above_chance", "reason")
EMERGENCE_COLUMNS: tuple[str, ...] = (
    "mode", "k", "metric", "n_checkpoints", "n_above_chance", "onset_loss", "sharpness", "sharpness_axis",
    "breakpoint_loss", "breakpoint_lo", "breakpoint_hi", "breakpoint_in_range", "reason",
)
MIRAGE_COLUMNS: tuple[str, ...] = ("mode", "k", "sharpness_exact_match", "sharpness_partial_credit",
                                   "sharpness_gold_logprob", "verdict")
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


def _breakpoint(rows: pd.DataFrame, boot: dict[str, np.ndarray]) -> tuple[float, float, float, str | None]:
    """Threshold-form breakpoint and its interval; NaN where the fitted curve never leaves chance.

    A fit whose competence at the lowest observed loss is below 0.05 has no breakpoint inside the
    data (the rate c collapsed); such bootstrap replicates are NaN too.
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
    lo, hi = percentile_ci(np.where(rises, eta, np.nan))
    if threshold_competence(point[0], rate[0], loss.min()) < 0.05:
        return np.nan, lo, hi, "competence never leaves chance: no breakpoint"
    return float(point[0]), float(lo), float(hi), None


def emergence_table(competence: pd.DataFrame, boot: dict[str, np.ndarray], above: pd.DataFrame) -> pd.DataFrame:
    """One row per (mode, k, metric) of a rate metric; `boot` rows align with `competence` rows."""
    out = []
    counts = above.assign(hit=above["above_chance"].eq(True)).groupby(CELL)["hit"].sum()
    onset = above[above["above_chance"].eq(True)].merge(competence[["checkpoint_id", *CELL, "loss"]],
                                                         on=["checkpoint_id", *CELL])
    onset = onset.groupby(CELL)["loss"].max()
    for key, rows in competence[competence["metric"].isin(RATE_METRICS)].groupby(CELL, sort=True):
        x, axis = _axis(rows)
        sharp = window_sharpness(x, rows["competence"].to_numpy(float))
        eta, lo, hi, why = _breakpoint(rows, boot)
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


def _verdict(sharp: dict[str, float]) -> str:
    em = sharp.get("exact_match", np.nan)
    if not np.isfinite(em):
        return "no exact-match jump: exact match changes by less than 0.1 (or is missing)"
    if em < SHARP:
        return f"exact match rises gradually (sharpness {em:.2f} < {SHARP}); no jump to explain"
    cont = {m: sharp[m] for m in ("gold_logprob", "partial_credit") if np.isfinite(sharp.get(m, np.nan))}
    if not cont:
        return "no continuous metric recorded for these items; the mirage check cannot run"
    reference = next(iter(cont))
    text = ", ".join(f"{m} {v:.2f}" for m, v in cont.items())
    if cont[reference] >= SHARP:
        return f"jump survives under {reference}: exact match sharpness {em:.2f}; continuous {text}"
    return f"mirage: exact-match jump (sharpness {em:.2f}) is gradual under {reference} ({text})"


def mirage_table(competence: pd.DataFrame) -> pd.DataFrame:
    """Sharpness of exact match, partial credit and mean gold log-prob against loss, per (mode, k)."""
    out = []
    metrics = ("exact_match", "partial_credit", "gold_logprob")
    rows = competence[competence["metric"].isin(metrics)]
    for (mode, k), cell in rows.groupby(["mode", "k"], sort=True):
        sharp = {}
        for metric in metrics:
            m = cell[cell["metric"] == metric]
            if m.empty:
                continue
            floor = 0.1 if metric == "exact_match" else 0.0
            value = window_sharpness(m["loss"].to_numpy(float), m["mean"].to_numpy(float), min_range=floor)
            # a continuous metric that does not move at all has no jump: sharpness 0, not missing
            flat = metric != "exact_match" and np.isnan(value) and m["mean"].notna().sum() >= 3
            sharp[metric] = 0.0 if flat else value
        out.append({"mode": mode, "k": k, **{f"sharpness_{m}": sharp.get(m, np.nan) for m in metrics},
                    "verdict": _verdict(sharp)})
    return pd.DataFrame(out, columns=list(MIRAGE_COLUMNS))
