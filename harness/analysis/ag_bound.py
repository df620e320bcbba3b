"""Arora-Goyal single-skill tail bound, Arora & Goyal (2023), emergence for k-tuples of skills.

If a fraction theta of k-skill items (text pieces) fail, then at least 1 - alpha of the skills fail
at most beta* theta of their items, where beta* is the root in (1, 1/alpha) of
    H(theta) = k theta KL(alpha beta || alpha),
H the binary entropy and KL the binary Kullback-Leibler divergence, both in nats. No root
(H(theta) >= k theta log(1/alpha)) means the bound is vacuous for these (k, theta, alpha).

Empirically, per (checkpoint, mode, k): theta = chance-corrected failure of the k-skill items;
a skill's failure rate is measured on the edges of the skill graph, i.e. over the composite items
that contain it (a skill twice in an item counts twice), and also on its own k = 1 items.
A bound of 1 (theta = 1, or beta* theta clipped to 1) is vacuous: every failure rate is <= 1, so
such a cell cannot test the bound; its frac_inside and holds are NaN with a reason, which keeps it
out of the fraction of cells where the bound holds.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import optimize, special

from harness.analysis.stats import chance_correct

BOUND_COLUMNS: tuple[str, ...] = (
    "checkpoint_id", "mode", "k", "theta", "alpha", "beta_star", "bound", "n_skills", "frac_inside",
    "holds", "frac_inside_single", "reason",
)


def binary_entropy(p: float) -> float:
    """H(p) = -p ln p - (1 - p) ln(1 - p), in nats."""
    return float(-special.xlogy(p, p) - special.xlogy(1.0 - p, 1.0 - p))


def binary_kl(p: float, q: float) -> float:
    """KL(p || q) = p ln(p/q) + (1 - p) ln((1 - p)/(1 - q)), in nats."""
    return float(special.xlogy(p, p / q) + special.xlogy(1.0 - p, (1.0 - p) / (1.0 - q)))


def tail_bound_beta(k: int, theta: float, alpha: float) -> float:
    """beta* in (1, 1/alpha) solving H(theta) = k theta KL(alpha beta || alpha); NaN when there is no root.

    Args:
        k: skills per item.
        theta: fraction of failed k-skill items, in (0, 1).
        alpha: fraction of skills the bound may miss, in (0, 1).
    """
    if not (0.0 < theta < 1.0 and 0.0 < alpha < 1.0 and k >= 1):
        return float("nan")
    h = binary_entropy(theta)

    def gap(beta: float) -> float:
        return k * theta * binary_kl(min(alpha * beta, 1.0), alpha) - h

    if gap(1.0 / alpha) <= 0.0:
        return float("nan")
    return float(optimize.brentq(gap, 1.0, 1.0 / alpha, xtol=1e-12, rtol=1e-12))


def tail_bound(k: int, theta: float, alpha: float) -> float:
    """The failure-rate bound min(1, beta* theta); NaN when there is no root, 0 at theta = 0, 1 at theta = 1.

    beta* theta exceeds 1 for large theta (k = 16, alpha = 0.1: theta > ~0.42); a failure rate is at
    most 1, so the bound is capped there, which also keeps it non-decreasing in theta.
    """
    if theta == 0.0:
        return 0.0
    if theta == 1.0:
        return 1.0
    beta = tail_bound_beta(k, theta, alpha)
    return float(np.minimum(1.0, beta * theta))  # NaN stays NaN


def edge_failure_rates(sums: pd.DataFrame, clusters: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Chance-corrected failure per (checkpoint, mode, k, skill) over the composite items containing the skill."""
    rows = sums[(sums["k"] > 1) & (sums["metric"] == metric)]
    rows = rows.assign(skill=rows["cluster"].map(clusters.set_index("cluster")["skill_key"]).str.split("+"))
    edges = rows.explode("skill")
    out = edges.groupby(["checkpoint_id", "mode", "k", "skill"], sort=True)[
        ["total", "n", "chance_total", "chance_n"]].sum().reset_index()
    out = out[out["n"] > 0]
    chance = np.where(out["chance_n"] > 0, out["chance_total"] / out["chance_n"].where(out["chance_n"] > 0), np.nan)
    return out.assign(failure=1.0 - chance_correct(out["total"] / out["n"], chance))


def tail_bound_table(competence: pd.DataFrame, edges: pd.DataFrame, singles: pd.DataFrame, *,
                     metric: str = "exact_match", alpha: float = 0.1) -> pd.DataFrame:
    """Checks the tail bound per (checkpoint, mode, k > 1).

    Args:
        competence: the `competence` table.
        edges: `edge_failure_rates` output.
        singles: `product_rule.single_skill_rates` output (k = 1 counts per skill).
    """
    cells = competence[(competence["k"] > 1) & (competence["metric"] == metric)]
    single_fail = singles.assign(failure=1.0 - chance_correct(singles["accuracy"], singles["chance"]))
    single_fail = single_fail.groupby("checkpoint_id")["failure"].apply(np.asarray).to_dict()
    edge_fail = edges.groupby(["checkpoint_id", "mode", "k"])["failure"].apply(np.asarray).to_dict()
    out = []
    for r in cells.itertuples():
        theta = 1.0 - r.competence if np.isfinite(r.competence) else np.nan
        row = {"checkpoint_id": r.checkpoint_id, "mode": r.mode, "k": r.k, "theta": theta, "alpha": alpha}
        bound = tail_bound(int(r.k), theta, alpha) if np.isfinite(theta) else np.nan
        beta = tail_bound_beta(int(r.k), theta, alpha) if np.isfinite(theta) else np.nan
        rates = edge_fail.get((r.checkpoint_id, r.mode, r.k), np.array([]))
        if not np.isfinite(bound):
            reason = ("no composite competence" if not np.isfinite(theta)
                      else "no root in (1, 1/alpha): bound is vacuous")
            out.append(dict(row, beta_star=beta, n_skills=len(rates), reason=reason))
            continue
        if bound >= 1.0:
            reason = "vacuous: failure rate 1" if theta >= 1.0 else "vacuous: bound beta* theta clipped to 1"
            out.append(dict(row, beta_star=beta, bound=bound, n_skills=len(rates), reason=reason))
            continue
        inside = float(np.mean(rates <= bound + 1e-12)) if len(rates) else np.nan
        own = single_fail.get(r.checkpoint_id, np.array([]))
        out.append(dict(row, beta_star=beta, bound=bound, n_skills=len(rates), frac_inside=inside,
                        holds=bool(inside >= 1.0 - alpha) if np.isfinite(inside) else None,
                        frac_inside_single=float(np.mean(own <= bound + 1e-12)) if len(own) else np.nan,
                        reason=None if len(rates) else "no composite items with scored skills"))
    return pd.DataFrame(out, columns=list(BOUND_COLUMNS))
