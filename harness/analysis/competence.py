"""Per-checkpoint competence of each (mode, k, metric) cell, the three curve fits and the forecast test.

Competence is the chance-corrected mean (p - g)/(1 - g) over scored items. The interval of a rate's
mean is a t interval on the logit scale of the Jeffreys-smoothed rate: logit(p) +- sqrt(G / (G - 1))
t_{G-1} times the standard deviation of the shared item-cluster bootstrap replicates, G the cell's
clusters (8 skills at k = 1; the tuples of a composite cell), back-transformed (`stats.expanded_t_ci`);
where every replicate is alike (e.g. every item right) it is the items' Jeffreys interval. The
competence interval is the mean's, chance-corrected. The plain 95% percentile interval of
competence covered 0.88-0.89 of simulated cells (benchmarks/calibration/intervals.py), too short
with few clusters, near 0 and 1, and at chance (where the clipped replicates lose their spread).
The forecast test fits each curve without the
`n_holdout` lowest-loss checkpoints and compares its predicted success with the observed rate and
that rate's Jeffreys 95% interval. A cell whose competence is 0 (or at chance) at every checkpoint,
or 1 at every checkpoint, has no curve to fit: its forms are skipped with a reason.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import special

from harness.analysis.cluster_sums import cell_boot
from harness.analysis.curves import COVARIATE, FORMS, CompetenceCurve
from harness.records import RATE_METRICS
from harness.analysis.stats import chance_correct, expanded_t_ci, jeffreys, floor_or_ceiling, jeffreys_interval, percentile_ci

COMPETENCE_COLUMNS: tuple[str, ...] = (
    "checkpoint_id", "mode", "k", "metric", "n", "n_failed", "successes", "mean", "mean_lo", "mean_hi",
    "chance", "competence", "competence_lo", "competence_hi", "loss", "excess_loss", "reason",
)
FIT_COLUMNS: tuple[str, ...] = ("mode", "k", "metric", "form", "n_checkpoints", "nll", "aic", "delta_aic",
                                "converged", "reason")
PARAM_COLUMNS: tuple[str, ...] = ("mode", "k", "metric", "form", "param", "value")
FORECAST_COLUMNS: tuple[str, ...] = ("mode", "k", "metric", "form", "checkpoint_id", "loss", "excess_loss", "n",
                                     "observed", "observed_lo", "observed_hi", "predicted", "predicted_lo",
                                     "predicted_hi", "inside", "reason")
CURVE_COLUMNS: tuple[str, ...] = ("mode", "k", "metric", "form", "covariate", "x", "competence")
CELL: list[str] = ["mode", "k", "metric"]


def competence_table(sums: pd.DataFrame, weights: np.ndarray,
                     excess: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Competence per (checkpoint, mode, k, metric), with cluster-bootstrap intervals.

    Returns:
        (the `competence` table, its bootstrap replicates from `cells.cell_boot`, rows aligned).
    """
    cells, boot = cell_boot(sums, ["checkpoint_id", *CELL], weights)
    cells = cells.rename(columns={"total": "successes"})
    n_clusters = sums.groupby(["checkpoint_id", *CELL], sort=True, observed=True)["cluster"].nunique().to_numpy()
    rate = cells["metric"].isin(RATE_METRICS).to_numpy()
    lo, hi = expanded_t_ci(cells["mean"].to_numpy(float), boot["mean"], n_clusters)
    # rates: on the logit scale of the Jeffreys-smoothed rate, which keeps the interval's skew near 0 and 1
    with np.errstate(divide="ignore", invalid="ignore"):
        smooth = special.logit(jeffreys(boot["total"], boot["n"]))
        llo, lhi = expanded_t_ci(special.logit(jeffreys(cells["successes"].to_numpy(float),
                                                        cells["n"].to_numpy(float))), smooth, n_clusters)
    # every replicate alike (e.g. every item right): the bootstrap sees no spread; the items' Jeffreys interval
    j_lo, j_hi = jeffreys_interval(cells["successes"].to_numpy(float), cells["n"].to_numpy(float))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # cells without scored items: NaN, handled by the reason
        flat = rate & (np.nanstd(boot["mean"], axis=1) == 0) & (n_clusters >= 2)
    cells["mean_lo"] = np.where(flat, j_lo, np.where(rate, special.expit(llo), lo))
    cells["mean_hi"] = np.where(flat, j_hi, np.where(rate, special.expit(lhi), hi))
    # from the mean's interval, not from the clipped competence replicates, whose spread shrinks near chance
    cells["competence_lo"] = chance_correct(cells["mean_lo"].to_numpy(float), cells["chance"].to_numpy(float))
    cells["competence_hi"] = chance_correct(cells["mean_hi"].to_numpy(float), cells["chance"].to_numpy(float))
    no_ci = cells["competence"].notna() & cells["competence_lo"].isna() & cells["reason"].isna()
    cells.loc[no_ci, "reason"] = "one item cluster (or too few valid replicates): no bootstrap interval"
    by_id = excess.set_index("checkpoint_id")
    cells["loss"] = cells["checkpoint_id"].map(by_id["loss"]).astype(float)
    cells["excess_loss"] = cells["checkpoint_id"].map(by_id["excess_loss"]).astype(float)
    return cells[list(COMPETENCE_COLUMNS)], boot


def _usable(rows: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """Checkpoints every form is fitted on, so that AICs compare the same data.

    Returns:
        (rows with counts, chance and loss, and with a positive excess loss when at least 3 have one;
        whether excess loss is available for the excess-loss forms).
    """
    ok = (rows["n"] > 0) & np.isfinite(rows["chance"]) & (rows["chance"] < 1) & np.isfinite(rows["loss"])
    with_excess = ok & np.isfinite(rows["excess_loss"]) & (rows["excess_loss"] > 0)
    if with_excess.sum() >= 3:
        return rows[with_excess].sort_values("loss"), True
    return rows[ok].sort_values("loss"), False


def _fit(rows: pd.DataFrame, form: str) -> CompetenceCurve:
    curve = CompetenceCurve(form)
    x = rows[curve.covariate].to_numpy(float)
    return curve.fit(x, rows["successes"].to_numpy(float), rows["n"].to_numpy(float), rows["chance"].to_numpy(float))


def _forecast(rows: pd.DataFrame, form: str, n_holdout: int, boot: dict[str, np.ndarray] | None = None,
              n_pi: int = 60) -> list[dict]:
    """Fits `form` without the `n_holdout` lowest-loss checkpoints and predicts their success rate.

    The prediction interval is for the observed rate: the 2.5-97.5% percentiles of Binomial(n, pred*) / n,
    where pred* is the prediction of the form refitted to an item-cluster bootstrap replicate of the
    training checkpoints. It carries the parameters' uncertainty (clusters of items shared by every
    checkpoint) and the held-out cell's own sampling noise; a point prediction against the observed
    Jeffreys interval carried neither and covered 0.61-0.87 of held-out points for the true form.
    Without replicates (boot None) the interval is NaN and "inside" falls back to that old check.
    """
    held, train = rows.head(n_holdout), rows.iloc[n_holdout:]
    base = [{"checkpoint_id": r.checkpoint_id, "loss": r.loss, "excess_loss": r.excess_loss, "n": r.n}
            for r in held.itertuples()]
    if len(train) < 3 or n_holdout < 1:
        return [dict(b, reason=f"{len(train)} checkpoints left to fit; need 3") for b in base]
    curve = _fit(train, form)
    x_held = held[curve.covariate].to_numpy(float)
    pred = curve.predict(x_held, held["chance"].to_numpy(float))
    lo, hi = jeffreys_interval(held["successes"].to_numpy(float), held["n"].to_numpy(float))
    observed = (held["successes"] / held["n"]).to_numpy(float)
    p_lo = p_hi = np.full(len(held), np.nan)
    if boot is not None and n_pi > 0:
        diffs = np.full((len(held), min(n_pi, boot["n"].shape[1])), np.nan)
        rng = np.random.default_rng(len(held) * 1_000_003 + len(train))  # seeded: same data, same interval
        n_held = np.round(held["n"].to_numpy(float)).astype(np.int64)
        t_idx = train.index.to_numpy()
        x_train, g_train = train[curve.covariate].to_numpy(float), train["chance"].to_numpy(float)
        for b in range(diffs.shape[1]):
            n_t = boot["n"][t_idx, b]
            if np.count_nonzero(n_t) < 3:
                continue
            refit = CompetenceCurve(form, init=curve.theta_).fit(x_train, boot["total"][t_idx, b], n_t, g_train)
            p_b = np.clip(refit.predict(x_held, held["chance"].to_numpy(float)), 0.0, 1.0)
            diffs[:, b] = rng.binomial(n_held, np.nan_to_num(p_b)) / np.maximum(n_held, 1)
            diffs[~np.isfinite(p_b), b] = np.nan
        p_lo, p_hi = percentile_ci(diffs, axis=1)
    rows_out = []
    for b, o, a, c, p, pl, ph in zip(base, observed, lo, hi, pred, p_lo, p_hi):
        inside = bool(pl <= o <= ph) if np.isfinite(pl) else bool(a <= p <= c)
        rows_out.append(dict(b, observed=o, observed_lo=a, observed_hi=c, predicted=p, predicted_lo=pl,
                             predicted_hi=ph, inside=inside, reason=None))
    return rows_out


def _curve_points(rows: pd.DataFrame, curve: CompetenceCurve, n_points: int = 40) -> pd.DataFrame:
    x = rows[curve.covariate].to_numpy(float)
    grid = np.geomspace(x.min(), x.max(), n_points) if curve.covariate == "excess_loss" else \
        np.linspace(x.min(), x.max(), n_points)
    return pd.DataFrame({"covariate": curve.covariate, "x": grid, "competence": curve.predict_competence(grid)})


def fit_competence_curves(competence: pd.DataFrame, n_holdout: int = 2, boot: dict[str, np.ndarray] | None = None,
                          n_pi: int = 60, pi_metric: str | None = None) -> dict[str, pd.DataFrame]:
    """Fits every form to every (mode, k, metric) cell of a rate metric and runs the forecast test.

    Args:
        competence: the competence table.
        n_holdout: lowest-loss checkpoints held out by the forecast.
        boot: the competence table's item-cluster replicates (rows aligned), for prediction intervals.
        n_pi: replicates refitted per form and cell for the prediction intervals.
        pi_metric: the only metric given prediction intervals (they cost n_pi refits per form and cell);
            None gives them to every rate metric. Other metrics' forecasts have inside NaN and a reason.

    Returns:
        Tables `competence_fits`, `competence_params`, `competence_forecast` and `competence_curves`.
    """
    fits, params, forecasts, curves = [], [], [], []
    rate = competence[competence["metric"].isin(RATE_METRICS)]
    for (mode, k, metric), rows in rate.groupby(CELL, sort=True):
        key = {"mode": mode, "k": k, "metric": metric}
        usable, has_excess = _usable(rows)
        flat = floor_or_ceiling(*(usable[c].to_numpy(float) for c in ("successes", "n", "chance")))
        for form in FORMS:
            if len(usable) < 3:
                reason = f"{len(usable)} checkpoints with counts and loss; need 3"
            elif COVARIATE[form] == "excess_loss" and not has_excess:
                reason = "needs a positive excess loss on 3 checkpoints"
            else:
                reason = flat
            if reason:
                fits.append(dict(key, form=form, n_checkpoints=len(usable), reason=reason))
                continue
            curve = _fit(usable, form)
            fits.append(dict(key, form=form, n_checkpoints=len(usable), nll=curve.nll_, aic=curve.aic_,
                             converged=curve.converged_, reason=None))
            params += [dict(key, form=form, param=p, value=v) for p, v in curve.params_.items()]
            with_pi = pi_metric is None or metric == pi_metric
            points = _forecast(usable, form, n_holdout, boot if with_pi else None, n_pi)
            if not with_pi:
                points = [dict(r, inside=None, reason=r.get("reason") or
                               f"prediction intervals are computed for {pi_metric} only") for r in points]
            forecasts += [dict(key, form=form, **r) for r in points]
            curves.append(_curve_points(usable, curve).assign(form=form, **key))
    fit_table = pd.DataFrame(fits, columns=list(FIT_COLUMNS))
    fit_table["delta_aic"] = fit_table["aic"] - fit_table.groupby(CELL)["aic"].transform("min")
    return {
        "competence_fits": fit_table,
        "competence_params": pd.DataFrame(params, columns=list(PARAM_COLUMNS)),
        "competence_forecast": pd.DataFrame(forecasts, columns=list(FORECAST_COLUMNS)),
        "competence_curves": (pd.concat(curves, ignore_index=True)[list(CURVE_COLUMNS)] if curves
                              else pd.DataFrame(columns=list(CURVE_COLUMNS))),
    }

