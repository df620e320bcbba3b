"""Product rule and compositionality gap of composite items, per (checkpoint, mode, k).

Both sides live in one space. Predicted composite success (raw, chance included) = mean over the
administered composite items of prod_{s in item} p_s, where p_s = raw k = 1 accuracy of skill s on
that checkpoint (an item guessed right by chance in every part counts, as it does in the composite's
own score). Observed = raw composite success on the same items. Both are then chance-corrected the
same way, with the composite items' own chance level g: q = (p - g) / (1 - g). Under exact
independence of the parts the ratio of the two is 1 at every chance level; multiplying
chance-corrected part rates instead, against a chance-corrected composite, gave 1.7 / 2.7 / 4.3 for
k = 2 / 3 / 4 at chance 0.5, and Jeffreys-smoothed point estimates 1.04-1.08 for a perfect model
(benchmarks/bench_calibration.py). Point estimates are unsmoothed. The ratio observed / predicted
has a percentile interval from the item-cluster bootstrap of composite items combined with a
resample of each skill's k = 1 items (binomial draws at its observed rate: single skills cannot be
cluster-resampled, since every composite item needs each of its skills). Both sides are resampled
the same way, so a skill answered right on every item is as certain as a composite cell answered
right on every item (posterior draws on one side only moved the whole interval off 1 at the ceiling).

The ratio is reported only where the prediction is informative: predicted competence >=
`MIN_PREDICTED` (0.05) and predicted x predictable items >= `MIN_EXPECTED` (5 expected successes).
Below that, observed ~ 0 is what both the product rule and any worse rule predict, and the ratio
(0 [0, 0], or 0/0) says nothing; such cells keep observed and predicted but get ratio NaN and a
reason, and are left out of every summary of the ratio.

Compositionality gap (after Press et al. 2022): among composite items all of whose skills are
"right" on that checkpoint, the fraction answered wrong. A skill is right when its raw k = 1
accuracy is >= `threshold` (default 0.9). Per-item constituent results are not in the records
schema (no link from a composite item to k = 1 items on its own inputs), so the skill-level rule
is the one used.
"""
from __future__ import annotations

import functools

import numpy as np
import pandas as pd
from scipy import sparse

from harness.analysis.stats import chance_correct, jeffreys, percentile_ci

PRODUCT_COLUMNS: tuple[str, ...] = (
    "checkpoint_id", "mode", "k", "n_items", "n_unpredictable", "observed", "observed_lo", "observed_hi",
    "predicted", "predicted_lo", "predicted_hi", "ratio", "ratio_lo", "ratio_hi", "gap", "gap_lo", "gap_hi",
    "n_gap_items", "reason",
)
MIN_PREDICTED = 0.05
"""Smallest predicted competence at which observed / predicted is reported."""
MIN_EXPECTED = 5.0
"""Smallest number of expected successes (predicted x predictable items) at which the ratio is reported."""


def single_skill_rates(sums: pd.DataFrame, clusters: pd.DataFrame, metric: str) -> pd.DataFrame:
    """k = 1 counts per (checkpoint, skill) with raw accuracy and smoothed chance-corrected competence q.

    Skills with no scored k = 1 item on a checkpoint are absent (their composites are unpredictable).
    """
    rows = sums[(sums["k"] == 1) & (sums["metric"] == metric)]
    rows = rows.assign(skill=rows["cluster"].map(clusters.set_index("cluster")["skill_key"]))
    out = rows.groupby(["checkpoint_id", "skill"], sort=True)[["total", "n", "chance_total", "chance_n"]].sum()
    out = out.reset_index()
    scored_chance = out["chance_n"].where(out["chance_n"] > 0)
    out["chance"] = np.where(out["chance_n"] > 0, out["chance_total"] / scored_chance, np.nan)
    out["accuracy"] = np.where(out["n"] > 0, out["total"] / out["n"].where(out["n"] > 0), np.nan)
    out["q"] = np.where(out["n"] > 0, chance_correct(jeffreys(out["total"], out["n"]), out["chance"]), np.nan)
    return out[out["n"] > 0].reset_index(drop=True)


def _composite_rows(sums: pd.DataFrame, clusters: pd.DataFrame, metric: str) -> pd.DataFrame:
    rows = sums[(sums["k"] > 1) & (sums["metric"] == metric) & (sums["n"] > 0)]
    return rows.assign(skill_key=rows["cluster"].map(clusters.set_index("cluster")["skill_key"])).reset_index(drop=True)


def _skill_index(comp: pd.DataFrame, singles: pd.DataFrame) -> np.ndarray:
    """(n_rows, k_max) row index into `singles` of each composite row's skills; -1 pads, -2 is missing."""
    lookup = {key: i for i, key in enumerate(zip(singles["checkpoint_id"], singles["skill"]))}
    k_max = int(comp["k"].max()) if len(comp) else 0
    index = np.full((len(comp), k_max), -1, dtype=np.int64)
    for r, (ck, key) in enumerate(zip(comp["checkpoint_id"], comp["skill_key"])):
        for j, skill in enumerate(key.split("+")):
            index[r, j] = lookup.get((ck, skill), -2)
    return index


def _log_product(index: np.ndarray, log_q: np.ndarray) -> np.ndarray:
    """Sum of log q over each row's skills; log_q is (n_singles, ...) and the result (n_rows, ...)."""
    safe = np.where(index >= 0, index, 0)
    terms = np.where((index >= 0)[(...,) + (None,) * (log_q.ndim - 1)], log_q[safe], 0.0)
    return terms.sum(axis=1)


def _boot_ratio(num_rows: np.ndarray, den_rows: np.ndarray, *, cell: np.ndarray, n_cells: int,
                weights_rows: np.ndarray) -> np.ndarray:
    """Per-cell bootstrap of sum(num) / sum(den); *_rows are (n_rows,) or (n_rows, B); weights (n_rows, B)."""
    indicator = sparse.csr_matrix((np.ones(len(cell)), (cell, np.arange(len(cell)))), shape=(n_cells, len(cell)))
    num = indicator @ (weights_rows * (num_rows if num_rows.ndim == 2 else num_rows[:, None]))
    den = indicator @ (weights_rows * (den_rows if den_rows.ndim == 2 else den_rows[:, None]))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _predictions(sums, clusters, weights, rng, metric, threshold):
    """Composite rows with their product prediction (point and bootstrap) and gap eligibility."""
    singles = single_skill_rates(sums, clusters, metric)
    comp = _composite_rows(sums, clusters, metric)
    if singles.empty or comp.empty:
        return None, None
    index = _skill_index(comp, singles)
    n_single = np.round(singles["n"].to_numpy(float)).astype(np.int64)
    rate = np.clip(singles["accuracy"].to_numpy(float), 0.0, 1.0)
    draws = rng.binomial(n_single[:, None], rate[:, None], size=(len(singles), weights.shape[0])) / n_single[:, None]
    with np.errstate(divide="ignore"):
        pred = np.exp(_log_product(index, np.log(singles["accuracy"].to_numpy(float))))
        pred_boot = np.exp(_log_product(index, np.log(draws)))
    right = np.where(index >= 0, (singles["accuracy"].to_numpy(float) >= threshold)[np.maximum(index, 0)], True)
    predictable = ~(index == -2).any(axis=1)
    comp = comp.assign(pred=pred, predictable=predictable, eligible=right.all(axis=1) & predictable,
                       n_unpredictable=np.where(predictable, 0.0, comp["n"]))
    return comp, pred_boot


def product_rule_table(sums: pd.DataFrame, clusters: pd.DataFrame, weights: np.ndarray, rng: np.random.Generator,
                       *, metric: str = "exact_match", threshold: float = 0.9) -> pd.DataFrame:
    """Observed vs product-predicted composite competence and the compositionality gap (module docstring).

    n_items counts the scored composite items; observed, predicted and gap use the predictable ones
    (those whose every skill has scored k = 1 items on that checkpoint), n_items - n_unpredictable.
    """
    comp, pred_boot = _predictions(sums, clusters, weights, rng, metric, threshold)
    if comp is None:
        return pd.DataFrame(columns=list(PRODUCT_COLUMNS))
    keys = ["checkpoint_id", "mode", "k"]
    cells = comp.groupby(keys, sort=True)[["n", "n_unpredictable"]].sum().reset_index()
    cells = cells.rename(columns={"n": "n_items"})
    keep, pred_boot = comp[comp["predictable"]], pred_boot[comp["predictable"].to_numpy()]
    cell = keep.merge(cells[keys].reset_index(), on=keys, how="left")["index"].to_numpy(np.int64)
    ratio = functools.partial(_boot_ratio, cell=cell, n_cells=len(cells))
    w, one = weights[:, keep["cluster"].to_numpy()].T, np.ones((len(keep), 1))
    n, total, elig = (keep[c].to_numpy(float) for c in ("n", "total", "eligible"))
    g = ratio(keep["chance_total"].to_numpy(float), keep["chance_n"].to_numpy(float), weights_rows=one)[:, 0]
    cells["observed"] = chance_correct(ratio(total, n, weights_rows=one)[:, 0], g)
    cells["predicted"] = chance_correct(ratio(n * keep["pred"].to_numpy(), n, weights_rows=one)[:, 0], g)
    cells["gap"] = ratio(elig * (n - total), elig * n, weights_rows=one)[:, 0]
    cells["n_gap_items"] = np.bincount(cell, weights=elig * n, minlength=len(cells))
    observed_b = chance_correct(ratio(total, n, weights_rows=w), g[:, None])
    predicted_b = chance_correct(ratio(n[:, None] * pred_boot, n, weights_rows=w), g[:, None])
    gap_b = ratio(elig * (n - total), elig * n, weights_rows=w)
    return _finish(cells, observed_b, predicted_b, gap_b)


def _ratio_reason(predicted: float, n_predictable: float) -> str | None:
    """Why a cell's ratio is not reported (see the module docstring), or None."""
    if not n_predictable > 0 or not np.isfinite(predicted):
        return "no predictable item: ratio undefined"
    if predicted < MIN_PREDICTED or predicted * n_predictable < MIN_EXPECTED:
        return (f"predicted competence < {MIN_PREDICTED} or < {MIN_EXPECTED:g} expected successes: "
                "ratio uninformative")
    return None


def _finish(cells: pd.DataFrame, observed_b, predicted_b, gap_b) -> pd.DataFrame:
    why_ratio = [_ratio_reason(p, n) for p, n in zip(cells["predicted"], cells["n_items"] - cells["n_unpredictable"])]
    informative = np.array([w is None for w in why_ratio])
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio_b = np.where((predicted_b > 1e-12) & informative[:, None], observed_b / predicted_b, np.nan)
        cells["ratio"] = np.where(informative, cells["observed"] / cells["predicted"], np.nan)
    for name, boot in (("observed", observed_b), ("predicted", predicted_b), ("ratio", ratio_b), ("gap", gap_b)):
        cells[f"{name}_lo"], cells[f"{name}_hi"] = percentile_ci(boot, axis=1)
    reasons = []
    for why, n_gap in zip(why_ratio, cells["n_gap_items"]):
        no_gap = [] if n_gap > 0 else ["no composite item has all skills right: gap undefined"]
        parts = ([why] if why else []) + no_gap
        reasons.append("; ".join(parts) or None)
    cells["reason"] = reasons
    return cells[list(PRODUCT_COLUMNS)]
