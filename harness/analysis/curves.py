"""Competence-versus-loss curves fitted by binomial likelihood on per-checkpoint counts.

Observed success p = g + (1 - g) q, where g is the chance level and q in [0, 1] is competence:
  logistic:  q = 1 / (1 + (delta / delta50)^s)        (logistic in log excess loss; s >= 0)
  gompertz:  q = exp(-lambda delta^gamma)              (in excess loss; gamma >= 0)
  threshold: q = 1 - exp(-c max(0, eta - L))           (in raw loss L: chance above the loss
             threshold eta, rising below it at rate c; eta is the breakpoint and needs no E)
Counts are successes out of n scored items (partial credit gives fractional successes: a
quasi-binomial likelihood). AIC = 2 * n_params + 2 * NLL.
"""
from __future__ import annotations

import numpy as np
from scipy import optimize

from harness.analysis.stats import binomial_nll, binomial_score

FORMS: tuple[str, ...] = ("logistic", "gompertz", "threshold")
"""Curve forms, in report order."""
PARAM_NAMES: dict[str, tuple[str, str]] = {
    "logistic": ("log_delta50", "slope"),
    "gompertz": ("log_lambda", "gamma"),
    "threshold": ("eta_loss", "log_rate"),
}
"""Names of each form's two parameters."""
COVARIATE: dict[str, str] = {"logistic": "excess_loss", "gompertz": "excess_loss", "threshold": "loss"}
"""The x each form is written in."""


def _logistic(theta: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    log_x = np.log(x)
    z = np.clip(theta[1] * (log_x - theta[0]), -700, 700)
    q = 1.0 / (1.0 + np.exp(z))
    dq_dz = -q * (1.0 - q)
    return q, np.stack([dq_dz * -theta[1], dq_dz * (log_x - theta[0])])


def _gompertz(theta: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    log_x = np.log(x)
    u = np.exp(np.clip(theta[0] + theta[1] * log_x, -700, 700))
    q = np.exp(-u)
    return q, np.stack([-u * q, -u * q * log_x])


def threshold_competence(eta: np.ndarray, log_rate: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """q = 1 - exp(-exp(log_rate) * max(0, eta - loss)), broadcasting all arguments."""
    return -np.expm1(-np.exp(log_rate) * np.maximum(0.0, eta - loss))


def _loglik(s, n, p):
    p = np.clip(p, 1e-12, 1.0 - 1e-12)
    return s * np.log(p) + (n - s) * np.log1p(-p)


def _grid_loglik(etas, rates, loss, s, n, g) -> np.ndarray:
    """Log-likelihood (without constants) on per-replicate grids: etas (B, E), rates (B, R) -> (B, E, R)."""
    q = threshold_competence(etas[:, :, None, None], rates[:, None, :, None], loss[None, None, None, :])
    p = g[:, None, None, :] + (1.0 - g[:, None, None, :]) * q
    return np.nansum(_loglik(s[:, None, None, :], n[:, None, None, :], p), axis=-1)


def eta_range(loss: np.ndarray) -> tuple[float, float]:
    """The coarse search range of the threshold form's eta: [min L - 5% range, max L + 50% range]."""
    span = max(float(np.ptp(loss)), 1e-6)
    return float(np.min(loss) - 0.05 * span), float(np.max(loss) + 0.5 * span)


def threshold_grid(loss: np.ndarray, successes: np.ndarray, n: np.ndarray, chance: np.ndarray,
                   n_eta: int = 32, n_rate: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Grid maximum-likelihood fit of the threshold form for many count vectors at once.

    A coarse grid (eta in [min L - 5% range, max L + 50% range], c in [0.1, 1000] / range,
    log-spaced) is followed by a grid 7 (eta) and 3 (c) times finer around each replicate's best point.

    Args:
        loss: (m,) checkpoint losses.
        successes, n, chance: (B, m) counts and chance levels (one row per bootstrap replicate).

    Returns:
        (eta, log_rate), each (B,).
    """
    s, n, g = (np.atleast_2d(np.asarray(a, float)) for a in (successes, n, chance))
    span = max(float(np.ptp(loss)), 1e-6)
    etas = np.linspace(*eta_range(loss), n_eta)
    rates = np.linspace(np.log(0.1 / span), np.log(1000.0 / span), n_rate)
    ll = _grid_loglik(np.tile(etas, (len(s), 1)), np.tile(rates, (len(s), 1)), loss, s, n, g)
    best = np.argmax(ll.reshape(len(s), -1), axis=1)
    d_eta, d_rate = etas[1] - etas[0], rates[1] - rates[0]
    fine_etas = etas[best // n_rate][:, None] + np.linspace(-d_eta, d_eta, 15)[None, :]
    fine_rates = rates[best % n_rate][:, None] + np.linspace(-d_rate, d_rate, 7)[None, :]
    ll = _grid_loglik(fine_etas, fine_rates, loss, s, n, g).reshape(len(s), -1)
    best = np.argmax(ll, axis=1)
    rows = np.arange(len(s))
    return fine_etas[rows, best // 7], fine_rates[rows, best % 7]


class CompetenceCurve:
    """One competence curve of a (mode, k, metric) cell across checkpoints.

    Attributes set by `fit`: theta_, params_ (name -> value), nll_, aic_, n_points_, converged_.
    """

    def __init__(self, form: str = "logistic", init: np.ndarray | None = None) -> None:
        """Stores settings.

        Args:
            form: one of `FORMS`.
            init: a start (a previous `theta_`) used instead of the grid of starts, e.g. for bootstrap refits.
        """
        self.form = form
        self.init = init

    @property
    def covariate(self) -> str:
        """"excess_loss" or "loss": the x this form expects in `fit` and `predict`."""
        return COVARIATE[self.form]

    def fit(self, x: np.ndarray, successes: np.ndarray, n: np.ndarray, chance: np.ndarray) -> CompetenceCurve:
        """Maximum-likelihood fit on counts.

        Args:
            x: excess loss (> 0) or loss per checkpoint, see `covariate`.
            successes: successes (sum of values) per checkpoint.
            n: scored items per checkpoint.
            chance: chance level per checkpoint.

        Returns:
            self.
        """
        if self.form not in FORMS:
            raise ValueError(f"unknown curve form {self.form!r}; use one of {FORMS}")
        x, s, n, g = (np.asarray(a, float) for a in (x, successes, n, chance))
        if self.form == "threshold":
            theta, nll, ok = self._fit_threshold(x, s, n, g)
        else:
            theta, nll, ok = self._fit_smooth(x, s, n, g)
        self.theta_ = theta
        self.params_ = dict(zip(PARAM_NAMES[self.form], map(float, theta)))
        self.nll_ = float(nll)
        self.aic_ = 2.0 * len(theta) + 2.0 * self.nll_
        self.n_points_ = len(x)
        self.converged_ = bool(ok)
        return self

    def _fit_smooth(self, x, s, n, g):
        model = _logistic if self.form == "logistic" else _gompertz

        def objective(theta):
            q, dq = model(theta, x)
            p = g + (1.0 - g) * q
            return float(binomial_nll(s, n, p)), dq @ (binomial_score(s, n, p) * (1.0 - g))

        lx = np.log(x)
        if self.form == "logistic":
            starts = [(c, sl) for c in np.quantile(lx, [0.2, 0.5, 0.8]) for sl in (1.0, 4.0, 16.0)]
            bounds = [(lx.min() - 5.0, lx.max() + 5.0), (0.0, 100.0)]
        else:  # q = 1/2 at c; starts at the ends of the range too: where only the lowest-loss checkpoint is off
            # zero, every start inside it stalled on the flat q = 0 everywhere (log_lambda at its bound)
            starts = [(np.log(np.log(2.0)) - ga * c, ga) for c in np.quantile(lx, [0.0, 0.25, 0.5, 0.75, 1.0])
                      for ga in (0.5, 1.0, 2.0, 4.0, 8.0)]
            bounds = [(-60.0, 60.0), (0.0, 30.0)]
        starts = sorted(starts, key=lambda t: objective(np.asarray(t))[0])[:2] if self.init is None else [self.init]
        results = [optimize.minimize(objective, np.asarray(t), jac=True, method="L-BFGS-B", bounds=bounds)
                   for t in starts]
        best = min(results, key=lambda r: r.fun)
        return np.asarray(best.x), best.fun, best.success

    def _fit_threshold(self, x, s, n, g):
        eta, rate = threshold_grid(x, s[None], n[None], g[None]) if self.init is None else \
            ([self.init[0]], [self.init[1]])

        def objective(theta):
            return float(binomial_nll(s, n, g + (1.0 - g) * threshold_competence(theta[0], theta[1], x)))

        res = optimize.minimize(objective, np.array([eta[0], rate[0]]), method="Nelder-Mead",
                                options={"xatol": 1e-6, "fatol": 1e-9})
        return np.asarray(res.x), res.fun, res.success

    def predict_competence(self, x: np.ndarray) -> np.ndarray:
        """Chance-corrected competence q at x."""
        x = np.asarray(x, float)
        if self.form == "threshold":
            return threshold_competence(self.theta_[0], self.theta_[1], x)
        model = _logistic if self.form == "logistic" else _gompertz
        return model(self.theta_, x)[0]

    def predict(self, x: np.ndarray, chance: np.ndarray) -> np.ndarray:
        """Success probability p = g + (1 - g) q at x."""
        g = np.asarray(chance, float)
        return g + (1.0 - g) * self.predict_competence(x)
