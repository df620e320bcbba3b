"""Small statistical primitives: smoothing, chance correction, binomial likelihood, intervals and tests.

All functions are vectorized over numpy arrays and keep NaN as NaN (a missing count never becomes 0).
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import special, stats

_EPS = 1e-12


def jeffreys(successes: np.ndarray | float, n: np.ndarray | float) -> np.ndarray:
    """Jeffreys-smoothed success rate (s + 1/2) / (n + 1): the posterior mean under a Beta(1/2, 1/2) prior.

    Args:
        successes: success counts (fractional counts allowed).
        n: trial counts; n = 0 gives 1/2 (the prior mean), NaN gives NaN.
    """
    s, n = np.asarray(successes, float), np.asarray(n, float)
    return (s + 0.5) / (n + 1.0)


def chance_correct(p: np.ndarray | float, chance: np.ndarray | float) -> np.ndarray:
    """Chance-corrected competence p~ = (p - g) / (1 - g), clipped to [0, 1].

    Args:
        p: success rates.
        chance: chance levels g; g NaN or g >= 1 gives NaN (no correction is defined).
    """
    p, g = np.asarray(p, float), np.asarray(chance, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(g < 1.0, (p - g) / (1.0 - g), np.nan)
    return np.clip(q, 0.0, 1.0)


def jeffreys_interval(successes: np.ndarray | float, n: np.ndarray | float,
                      level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed Jeffreys interval for a binomial rate (Brown, Cai & DasGupta 2001).

    The lower end is 0 when s = 0 and the upper end is 1 when s = n; n = 0 or NaN gives NaN.
    """
    s, n = np.asarray(successes, float), np.asarray(n, float)
    tail = (1.0 - level) / 2.0
    with np.errstate(invalid="ignore"):
        ok = n > 0
        a, b = np.where(ok, s + 0.5, 1.0), np.where(ok, n - s + 0.5, 1.0)
        lo = np.where(s <= 0, 0.0, stats.beta.ppf(tail, a, b))
        hi = np.where(s >= n, 1.0, stats.beta.ppf(1.0 - tail, a, b))
    return np.where(ok, lo, np.nan), np.where(ok, hi, np.nan)


def binomial_nll(successes: np.ndarray, n: np.ndarray, p: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Negative binomial log-likelihood -sum[log C(n, s) + s log p + (n - s) log(1 - p)].

    Fractional s (partial credit) is allowed through the gamma function (a quasi-likelihood);
    p is clipped to [1e-12, 1 - 1e-12] so a perfect fit stays finite.
    """
    s, n = np.asarray(successes, float), np.asarray(n, float)
    p = np.clip(np.asarray(p, float), _EPS, 1.0 - _EPS)
    log_c = special.gammaln(n + 1) - special.gammaln(s + 1) - special.gammaln(n - s + 1)
    terms = log_c + s * np.log(p) + (n - s) * np.log1p(-p)
    return -np.sum(terms, axis=axis)


def binomial_score(successes: np.ndarray, n: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Derivative of `binomial_nll` with respect to p, elementwise: -(s/p - (n - s)/(1 - p))."""
    s, n = np.asarray(successes, float), np.asarray(n, float)
    p = np.clip(np.asarray(p, float), _EPS, 1.0 - _EPS)
    return -(s / p - (n - s) / (1.0 - p))


def above_chance_pvalue(successes: np.ndarray, n: np.ndarray, chance: np.ndarray) -> np.ndarray:
    """Exact one-sided binomial p-value P(X >= s) for X ~ Binomial(n, g).

    With g = 0 any success is impossible under the null, so s >= 1 gives 0 and s = 0 gives 1.
    Non-integer counts or missing inputs give NaN.
    """
    s, n, g = (np.asarray(x, float) for x in (successes, n, chance))
    integer = np.isclose(s, np.round(s)) & np.isclose(n, np.round(n)) & (n > 0)
    with np.errstate(invalid="ignore"):
        p = stats.binom.sf(np.round(s) - 1, np.round(n), np.clip(g, 0.0, 1.0))
    return np.where(integer & np.isfinite(g), p, np.nan)


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values; NaN entries stay NaN and do not count as tests."""
    p = np.asarray(pvalues, float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adjusted, 1.0)
    return out


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar p-value: min(1, 2 P(X <= min(b, c))) for X ~ Binomial(b + c, 1/2).

    Args:
        only_a: discordant pairs where checkpoint A is right and B wrong.
        only_b: discordant pairs where B is right and A wrong.
    """
    total = int(only_a) + int(only_b)
    if total == 0:
        return 1.0
    return float(min(1.0, 2.0 * stats.binom.cdf(min(only_a, only_b), total, 0.5)))


def percentile_ci(samples: np.ndarray, level: float = 0.95, axis: int = -1,
                  min_valid: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval along `axis`, ignoring NaN replicates.

    Returns NaN where fewer than `min_valid` of the replicates are finite.
    """
    x = np.asarray(samples, float)
    tail = 100.0 * (1.0 - level) / 2.0
    valid = np.mean(np.isfinite(x), axis=axis)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices are masked below
        lo = np.nanpercentile(x, tail, axis=axis)
        hi = np.nanpercentile(x, 100.0 - tail, axis=axis)
    bad = valid < min_valid
    lo, hi = np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)
    if lo.ndim == 0:
        return float(lo), float(hi)
    return lo, hi


def lr_pvalue(nll_restricted: float, nll_full: float, df: int = 1, dispersion: float = 1.0) -> tuple[float, float]:
    """Likelihood-ratio test of a nested restriction, with a quasi-likelihood dispersion correction.

    Returns:
        (statistic, p-value) where statistic = 2 (nll_restricted - nll_full) / max(1, dispersion) is
        referred to chi-square with `df` degrees of freedom. Dispersion < 1 is not used to sharpen the test.
    """
    stat = max(0.0, 2.0 * (nll_restricted - nll_full)) / max(1.0, float(dispersion))
    if not np.isfinite(stat):
        return float("nan"), float("nan")
    return float(stat), float(stats.chi2.sf(stat, df))


def snap_zero(x: np.ndarray | float, tol: float = 1e-12) -> np.ndarray:
    """x with |x| < tol set to exactly 0: differences of equal rates summed in a different order are ~1e-17."""
    x = np.asarray(x, float)
    return np.where(np.abs(x) < tol, 0.0, x)


FLOOR, CEILING = 0.01, 0.99
"""Chance-corrected competence at or below which a cell is at the floor (chance), at or above which at 1."""


def floor_or_ceiling(successes: np.ndarray, n: np.ndarray, chance: np.ndarray,
                     what: str = "nothing to fit") -> str | None:
    """Why a curve over these cells cannot be fitted: every cell at chance, or every cell at 1; None otherwise.

    A cell is at the floor when its chance-corrected success rate is <= `FLOOR` and at the ceiling
    when it is >= `CEILING` (cells without counts are ignored). A curve fitted to such data puts
    its parameters on their search bounds and reports them as if they were estimates.

    Args:
        successes, n, chance: counts and chance level per cell.
        what: the end of the reason ("nothing to fit", "nothing to collapse", ...).
    """
    s, n, g = (np.asarray(a, float) for a in (successes, n, chance))
    ok = (n > 0) & np.isfinite(g)
    if not ok.any():
        return None
    q = chance_correct(s[ok] / n[ok], g[ok])
    if np.all(q <= FLOOR):
        return f"competence is 0 (or at chance) everywhere: {what}"
    if np.all(q >= CEILING):
        return f"competence is 1 everywhere: {what}"
    return None


def zero_width(lo: float, hi: float, estimate: float, n_valid: int, rel: float = 1e-4) -> bool:
    """True when a bootstrap interval from 2+ valid replicates has (numerically) zero width: every replicate
    stayed at its start, which happens where the likelihood is flat (the parameter is not identified)."""
    if n_valid < 2 or not (np.isfinite(lo) and np.isfinite(hi)):
        return False
    return bool(hi - lo <= rel * max(1.0, abs(float(estimate))))


def bootstrap_pvalue(replicates: np.ndarray, null: float, min_valid: float = 0.5,
                     alternative: str = "two-sided") -> float:
    """P-value of `null` from bootstrap replicates of an estimate: the inverted percentile interval.

    Two-sided: p = 2 min(#{rep <= null} + 1, #{rep >= null} + 1) / (n + 1), capped at 1; p < alpha exactly
    when `null` lies outside the equal-tailed (1 - alpha) percentile interval (up to the +1, which keeps
    p > 0). ``alternative="greater"`` tests H0: parameter <= null against > null, p = (#{rep <= null} + 1)
    / (n + 1) (rejects when `null` lies below the alpha percentile); ``"less"`` the mirror image. With
    replicates resampled over item clusters the test inherits the bootstrap's robustness to items that
    share a skill tuple and are scored at every checkpoint. NaN when fewer than `min_valid` of the
    replicates are finite.
    """
    reps = np.asarray(replicates, float)
    finite = reps[np.isfinite(reps)]
    if reps.size == 0 or finite.size < min_valid * reps.size or not np.isfinite(null):
        return float("nan")
    below, above = np.count_nonzero(finite <= null), np.count_nonzero(finite >= null)
    if alternative == "greater":
        return float((below + 1) / (finite.size + 1))
    if alternative == "less":
        return float((above + 1) / (finite.size + 1))
    if alternative != "two-sided":
        raise ValueError(f"alternative must be two-sided, greater or less, not {alternative!r}")
    return float(min(1.0, 2.0 * (min(below, above) + 1) / (finite.size + 1)))


def expanded_level(n_clusters: int, level: float = 0.95) -> float:
    """Coverage to ask of a percentile bootstrap over `n_clusters` so that it behaves like a t interval.

    Hesterberg (2015): use the tail probability whose normal quantile is sqrt(G / (G - 1)) t_{G-1, 1 - a/2};
    NaN for fewer than 2 clusters. With few clusters a plain percentile interval is too narrow (it
    ignores the G / (G - 1) variance deflation and the t tails): over 8 clusters 0.95 becomes 0.9885.
    """
    if n_clusters < 2:
        return float("nan")
    z = np.sqrt(n_clusters / (n_clusters - 1)) * stats.t.ppf(0.5 + level / 2, n_clusters - 1)
    return float(1.0 - 2.0 * stats.norm.sf(z))



def expanded_t_ci(point: np.ndarray, samples: np.ndarray, n_clusters: np.ndarray, level: float = 0.95,
                  bounds: tuple[float, float] = (-np.inf, np.inf), min_valid: float = 0.5
                  ) -> tuple[np.ndarray, np.ndarray]:
    """point +- sqrt(G / (G - 1)) t_{G-1} sd(replicates), row-wise, clipped to `bounds`.

    The interval Hesterberg's expanded percentile interval (`expanded_level`) approximates, read off
    the replicates' standard deviation instead of their extreme percentiles: at 8 clusters the
    expanded percentile interval needs the 0.6% and 99.4% percentiles, which 200 replicates place
    too far in (in a simulation of 8 clusters of 25 items it covered 0.926 at 200 replicates and
    0.912 at 99; this one 0.93-0.96 at either). Rows with fewer than 2 clusters, or fewer than
    `min_valid` finite replicates, are NaN.

    Args:
        point: (rows,) estimates.
        samples: (rows, B) bootstrap replicates.
        n_clusters: (rows,) clusters behind each estimate.
        level: nominal coverage.
        bounds: the range the quantity can take (e.g. (0, 1) for a rate).
        min_valid: share of finite replicates below which the row is NaN.
    """
    x = np.atleast_2d(np.asarray(samples, float))
    g = np.asarray(n_clusters, float).reshape(-1)
    ok = np.isfinite(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows without replicates are masked below
        sd = np.nanstd(x, axis=1, ddof=1)
        z = np.sqrt(g / (g - 1.0)) * stats.t.ppf(0.5 + level / 2, g - 1.0)
    half = np.where((g >= 2) & (ok.mean(axis=1) >= min_valid), z * sd, np.nan)
    point = np.asarray(point, float).reshape(-1)
    return np.clip(point - half, *bounds), np.clip(point + half, *bounds)
