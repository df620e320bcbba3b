"""Scaling-law estimator L(N) = E + A N^-alpha, or L(N, D) = E + A N^-alpha + B D^-beta (Hoffmann et al. 2022).

Fitting follows Hoffmann et al. (2022, Approach 3): with E = exp(e), A = exp(a), B = exp(b),
log L_pred = logsumexp(e, a - alpha log N, b - beta log D); the objective is the Huber loss
(delta = 1e-3) of the residuals log L_pred - log L_obs, summed over checkpoints, minimized by
L-BFGS-B from the best points of a grid of starts. `fixed_E` pins E to a known entropy floor, so
only A, alpha (and B, beta) are fitted.
"""
from __future__ import annotations

import numpy as np
from scipy import optimize, special

from harness.analysis.bootstrap import blas_single_thread, unit_resamples

_ALPHA_GRID = (0.1, 0.3, 0.6, 1.0, 2.0)
_BETA_GRID = (0.1, 0.3, 0.6, 1.0)
_E_FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)


def _huber(r: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Huber loss of residuals and its derivative."""
    absr = np.abs(r)
    loss = np.where(absr <= delta, 0.5 * r * r, delta * (absr - 0.5 * delta))
    return loss, np.clip(r, -delta, delta)


class ScalingLaw:
    """Hoffmann-style scaling law of per-token loss in parameters N (and tokens D).

    Attributes set by `fit`: E_, A_, alpha_, B_, beta_ (NaN without D), theta_ (fitted vector),
    param_names_, objective_ (summed Huber loss), converged_, n_points_, uses_tokens_, at_bound_
    (names of parameters that ended on a search bound: a sign the data do not identify them).
    """

    def __init__(self, *, fixed_E: float | None = None, huber_delta: float = 1e-3, n_starts: int = 3,
                 init: np.ndarray | None = None) -> None:
        """Stores settings.

        Args:
            fixed_E: known irreducible loss (nats/token); None fits E.
            huber_delta: Huber threshold on log-loss residuals.
            n_starts: how many of the best grid points start an L-BFGS-B run.
            init: a start (a previous `theta_`) used instead of the grid, e.g. for bootstrap refits.
        """
        self.fixed_E = fixed_E
        self.huber_delta = huber_delta
        self.n_starts = n_starts
        self.init = init

    def param_names(self, with_tokens: bool) -> tuple[str, ...]:
        """Names of the fitted vector `theta_` (log_E only when E is free)."""
        names = () if self.fixed_E is not None else ("log_E",)
        return names + ("log_A", "alpha") + (("log_B", "beta") if with_tokens else ())

    def _terms(self, thetas: np.ndarray, log_n: np.ndarray, log_d: np.ndarray | None) -> np.ndarray:
        """Log of each additive term, shape (n_thetas, n_points, n_terms)."""
        i = 0 if self.fixed_E is not None else 1
        e = np.full(len(thetas), np.log(self.fixed_E)) if i == 0 else thetas[:, 0]
        cols = [np.broadcast_to(e[:, None], (len(thetas), len(log_n))),
                thetas[:, i, None] - thetas[:, i + 1, None] * log_n[None, :]]
        if log_d is not None:
            cols.append(thetas[:, i + 2, None] - thetas[:, i + 3, None] * log_d[None, :])
        return np.stack(cols, axis=-1)

    def _objective(self, theta: np.ndarray, log_n, log_d, log_l) -> tuple[float, np.ndarray]:
        terms = self._terms(theta[None, :], log_n, log_d)[0]
        top = terms.max(axis=1, keepdims=True)
        expo = np.exp(terms - top)
        total = expo.sum(axis=1)
        lse = top[:, 0] + np.log(total)
        loss, dloss = _huber(lse - log_l, self.huber_delta)
        share = expo * (dloss / total)[:, None]
        grads = [] if self.fixed_E is not None else [share[:, 0].sum()]
        grads += [share[:, 1].sum(), -(share[:, 1] * log_n).sum()]
        if log_d is not None:
            grads += [share[:, 2].sum(), -(share[:, 2] * log_d).sum()]
        # scaled by 1/delta so L-BFGS-B's tolerances act on O(1) numbers
        return float(loss.sum() / self.huber_delta), np.asarray(grads) / self.huber_delta

    def _grid(self, log_n, log_d, loss) -> np.ndarray:
        E_values = [self.fixed_E] if self.fixed_E is not None else [f * loss.min() for f in _E_FRACTIONS]
        mid_n, mid_l = np.median(log_n), np.median(loss)
        mid_d = np.median(log_d) if log_d is not None else 0.0
        rows = []
        for E in E_values:
            gap = max(mid_l - E, 1e-3 * mid_l) / (2.0 if log_d is not None else 1.0)
            lead = [] if self.fixed_E is not None else [np.log(E)]
            for alpha in _ALPHA_GRID:
                head = lead + [np.log(gap) + alpha * mid_n, alpha]
                if log_d is None:
                    rows.append(head)
                else:
                    rows.extend(head + [np.log(gap) + beta * mid_d, beta] for beta in _BETA_GRID)
        return np.asarray(rows, float)

    def _bounds(self, loss: np.ndarray, with_tokens: bool) -> list[tuple[float, float]]:
        bounds = [] if self.fixed_E is not None else [(np.log(1e-6), np.log(10.0 * loss.max()))]
        bounds += [(-50.0, 150.0), (0.0, 5.0)]
        return bounds + ([(-50.0, 150.0), (0.0, 5.0)] if with_tokens else [])

    def _recentre(self, theta: np.ndarray, centre_n: float, centre_d: float, sign: float) -> np.ndarray:
        """Moves log_A (log_B) between log N (log D) and its centred version: a' = a - alpha * centre."""
        theta = np.array(theta, float)
        i = 0 if self.fixed_E is not None else 1
        theta[i] += sign * theta[i + 1] * centre_n
        if len(theta) > i + 2:
            theta[i + 2] += sign * theta[i + 3] * centre_d
        return theta

    def fit(self, n_params: np.ndarray, loss: np.ndarray, tokens: np.ndarray | None = None) -> ScalingLaw:
        """Fits the law to per-checkpoint losses.

        log N and log D are centred internally (which decorrelates log_A from alpha) and the
        reported parameters are converted back.

        Args:
            n_params: parameter counts N (> 0).
            loss: observed per-token losses (> 0).
            tokens: training tokens D (> 0); None fits L(N).

        Returns:
            self.
        """
        log_n, loss = np.log(np.asarray(n_params, float)), np.asarray(loss, float)
        log_d = None if tokens is None else np.log(np.asarray(tokens, float))
        centre_n, centre_d = float(log_n.mean()), (0.0 if log_d is None else float(log_d.mean()))
        log_n = log_n - centre_n
        log_d = None if log_d is None else log_d - centre_d
        log_l = np.log(loss)
        if self.init is not None and np.all(np.isfinite(self.init)):
            starts = [self._recentre(self.init, centre_n, centre_d, -1.0)]
        else:
            grid = self._grid(log_n, log_d, loss)
            starts = list(grid[np.argsort(self._grid_values(grid, log_n, log_d, log_l))[: self.n_starts]])
        bounds = self._bounds(loss, log_d is not None)
        best = None
        for start in starts:
            start = np.clip(start, [b[0] for b in bounds], [b[1] for b in bounds])
            res = optimize.minimize(self._objective, start, args=(log_n, log_d, log_l), jac=True,
                                    method="L-BFGS-B", bounds=bounds,
                                    options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 2000})
            if best is None or res.fun < best.fun:
                best = res
        lower, upper = np.array(bounds).T
        at_bound = np.isclose(best.x, lower, atol=1e-6) | np.isclose(best.x, upper, atol=1e-6)
        best.x = self._recentre(best.x, centre_n, centre_d, 1.0)
        self._store(best, log_d is not None, len(loss))
        self.at_bound_ = tuple(name for name, hit in zip(self.param_names_, at_bound) if hit)
        return self

    def _grid_values(self, grid, log_n, log_d, log_l) -> np.ndarray:
        lse = special.logsumexp(self._terms(grid, log_n, log_d), axis=2)
        return _huber(lse - log_l[None, :], self.huber_delta)[0].sum(axis=1)

    def _store(self, res: optimize.OptimizeResult, with_tokens: bool, n_points: int) -> None:
        self.theta_ = np.asarray(res.x, float)
        self.param_names_ = self.param_names(with_tokens)
        values = dict(zip(self.param_names_, self.theta_))
        self.E_ = float(self.fixed_E) if self.fixed_E is not None else float(np.exp(values["log_E"]))
        self.A_, self.alpha_ = float(np.exp(values["log_A"])), float(values["alpha"])
        self.B_ = float(np.exp(values["log_B"])) if with_tokens else float("nan")
        self.beta_ = float(values["beta"]) if with_tokens else float("nan")
        self.objective_ = float(res.fun) * self.huber_delta
        self.converged_ = bool(res.success)
        self.n_points_ = n_points
        self.uses_tokens_ = with_tokens

    def predict(self, n_params: np.ndarray, tokens: np.ndarray | None = None) -> np.ndarray:
        """Predicted per-token loss at N (and D when the law was fitted with tokens)."""
        n_params = np.asarray(n_params, float)
        pred = self.E_ + self.A_ * n_params ** -self.alpha_
        if self.uses_tokens_:
            pred = pred + self.B_ * np.asarray(tokens, float) ** -self.beta_
        return pred


PARAMS: tuple[str, ...] = ("E", "A", "alpha", "B", "beta")
"""Reported scaling-law parameters, in order."""


def bootstrap_scaling(law: ScalingLaw, n_params: np.ndarray, loss: np.ndarray, tokens: np.ndarray | None,
                      n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Refits a fitted law on checkpoints resampled with replacement.

    Replicates with fewer distinct checkpoints than free parameters + 1 are NaN (not identifiable).

    Returns:
        (n_boot, 5) array of E, A, alpha, B, beta per replicate.
    """
    n_params, loss = np.asarray(n_params, float), np.asarray(loss, float)
    out = np.full((n_boot, len(PARAMS)), np.nan)
    need = len(law.theta_) + 1
    with blas_single_thread():
        for b, index in enumerate(unit_resamples(len(loss), n_boot, rng)):
            if len(np.unique(index)) < need:
                continue
            refit = ScalingLaw(fixed_E=law.fixed_E, huber_delta=law.huber_delta, n_starts=1, init=law.theta_)
            refit.fit(n_params[index], loss[index], None if tokens is None else np.asarray(tokens, float)[index])
            out[b] = [refit.E_, refit.A_, refit.alpha_, refit.B_, refit.beta_]
    return out
