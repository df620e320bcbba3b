"""Scaling-law fits over the checkpoint family and the excess loss delta_m = L_m - E of each checkpoint.

E is the known entropy floor when every checkpoint reports one (delta is then exact), otherwise the
fitted E of L(N) (or L(N, D)); its checkpoint-bootstrap replicates give delta's percentile interval
(delta_lo = L - E_hi, delta_hi = L - E_lo). A checkpoint at or below E has no excess loss (NaN + reason).
A free-E fit with a parameter on its search bound (e.g. alpha = 0: the loss does not fall with N, so
E and A trade off) does not identify E: its E is NaN with a reason and is never used for delta.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from harness.analysis.scaling import PARAMS, ScalingLaw, bootstrap_scaling
from harness.analysis.stats import percentile_ci

SCALING_COLUMNS: tuple[str, ...] = (
    "variant", "form", "n_checkpoints", *[f"{p}{s}" for p in PARAMS for s in ("", "_lo", "_hi")],
    "known_floor", "E_minus_floor", "objective", "converged", "at_bound", "n_boot_valid", "reason",
)
"""Columns of the `scaling` table: one row per (form "N" or "ND", variant "free_E" or "fixed_E")."""
EXCESS_COLUMNS: tuple[str, ...] = (
    "checkpoint_id", "loss", "E", "excess_loss", "excess_lo", "excess_hi", "source", "reason",
)
"""Columns of the `excess_loss` table: one row per checkpoint."""


def excess_source(checkpoints: pd.DataFrame, E_fit: float) -> str:
    """Where delta's E comes from: "known floor" when every checkpoint reports one, else "fitted E" when
    `E_fit` is finite, else "unavailable"."""
    if len(checkpoints) and pd.to_numeric(checkpoints["entropy_floor"], errors="coerce").notna().all():
        return "known floor"
    return "fitted E" if np.isfinite(E_fit) else "unavailable"


def known_floor(checkpoints: pd.DataFrame) -> float:
    """The common entropy floor when every checkpoint reports the same finite one, else NaN."""
    floors = pd.to_numeric(checkpoints["entropy_floor"], errors="coerce").to_numpy(float)
    if len(floors) == 0 or not np.all(np.isfinite(floors)):
        return float("nan")
    return float(floors[0]) if np.allclose(floors, floors[0], rtol=1e-9, atol=1e-12) else float("nan")


def nd_possible(checkpoints: pd.DataFrame, n_column: str, min_points: int = 6) -> bool:
    """True when L(N, D) can be fitted: tokens_seen everywhere, N and D each with 2+ values, 6+ (N, D) points."""
    tokens = pd.to_numeric(checkpoints["tokens_seen"], errors="coerce")
    points = len(checkpoints[[n_column, "tokens_seen"]].drop_duplicates())
    return bool(tokens.gt(0).all() and tokens.nunique() >= 2 and checkpoints[n_column].nunique() >= 2
                and points >= min_points)


def scaling_data(checkpoints: pd.DataFrame, n_column: str, form: str) -> pd.DataFrame:
    """Checkpoints used by the scaling fit of `form`.

    "ND" uses every checkpoint with a positive loss and N; "N" uses the last checkpoint of each size
    (largest tokens_seen, then step, then lowest loss), because intermediate checkpoints of one
    size would otherwise pull the N-only law.
    """
    usable = checkpoints[np.isfinite(checkpoints["loss"]) & (checkpoints["loss"] > 0)]
    usable = usable[pd.to_numeric(usable[n_column], errors="coerce") > 0]
    if form == "ND":
        return usable
    tokens = pd.to_numeric(usable["tokens_seen"], errors="coerce").fillna(-np.inf)
    order = usable.assign(_t=tokens, _s=pd.to_numeric(usable["step"], errors="coerce").fillna(-np.inf))
    order = order.sort_values(["_t", "_s", "loss"], ascending=[False, False, True])
    return order.drop_duplicates(subset=[n_column]).drop(columns=["_t", "_s"])


def fit_scaling(checkpoints: pd.DataFrame, *, n_column: str, fixed_E: float | None, n_boot: int,
                rng: np.random.Generator, form: str = "N") -> tuple[dict, np.ndarray | None]:
    """Fits one scaling-law variant ("N" or "ND" form, free or fixed E) with a checkpoint bootstrap.

    Returns:
        (row of the `scaling` table, (n_boot, 5) bootstrap parameters or None when the fit cannot run).
    """
    rows = scaling_data(checkpoints, n_column, form)
    variant = "free_E" if fixed_E is None else "fixed_E"
    row: dict = {"variant": variant, "form": form, "n_checkpoints": len(rows)}
    n_free = len(ScalingLaw(fixed_E=fixed_E).param_names(form == "ND"))
    distinct = len(rows[[n_column, "tokens_seen"]].drop_duplicates()) if form == "ND" else rows[n_column].nunique()
    if distinct < n_free + 1:
        row["reason"] = (f"{distinct} distinct usable checkpoints; the {form} law with {n_free} free parameters "
                         f"needs {n_free + 1}")
        return row, None
    n_params = rows[n_column].to_numpy(float)
    tokens = rows["tokens_seen"].to_numpy(float) if form == "ND" else None
    law = ScalingLaw(fixed_E=fixed_E).fit(n_params, rows["loss"].to_numpy(float), tokens)
    boot = bootstrap_scaling(law, n_params, rows["loss"].to_numpy(float), tokens, n_boot, rng)
    lo, hi = percentile_ci(boot, axis=0)
    for j, name in enumerate(PARAMS):
        row[name], row[f"{name}_lo"], row[f"{name}_hi"] = getattr(law, f"{name}_"), lo[j], hi[j]
    row.update(objective=law.objective_, converged=law.converged_, at_bound=", ".join(law.at_bound_) or None,
               n_boot_valid=int(np.isfinite(boot[:, 0]).sum()), reason=None)
    if fixed_E is None and law.at_bound_:
        row.update(E=np.nan, E_lo=np.nan, E_hi=np.nan, reason=_unidentified_E(law))
    return row, boot


def _unidentified_E(law: ScalingLaw) -> str:
    """Why a free-E fit with parameters on their search bounds gives no E."""
    flat = [name for name in ("alpha", "beta") if name in law.at_bound_ and getattr(law, f"{name}_") < 1e-6]
    if flat:
        axes = " or ".join("N" if name == "alpha" else "D" for name in flat)
        return (f"E not identified: {' and '.join(flat)} at its bound 0 (the loss does not fall with {axes}, "
                "so E trades off with that term)")
    return f"E not identified: {', '.join(law.at_bound_)} on its search bound"


def excess_loss_table(checkpoints: pd.DataFrame, E: float, E_boot: np.ndarray | None, source: str) -> pd.DataFrame:
    """Excess loss of each checkpoint (the `excess_loss` table).

    Args:
        checkpoints: prepared checkpoints (with ``loss``).
        E: the common fitted E (ignored when source is "known floor": each row's entropy_floor is used).
        E_boot: bootstrap replicates of the fitted E, or None.
        source: "known floor", "fitted E" or "unavailable".
    """
    loss = checkpoints["loss"].to_numpy(float)
    table = pd.DataFrame({"checkpoint_id": checkpoints["checkpoint_id"], "loss": loss})
    if source == "known floor":
        table["E"] = checkpoints["entropy_floor"].to_numpy(float)
        delta = loss - table["E"].to_numpy(float)
        lo, hi = delta, delta
    elif source == "fitted E" and np.isfinite(E):
        table["E"], delta = E, loss - E
        lo, hi = delta, delta
        if E_boot is not None:
            boot = loss[:, None] - np.asarray(E_boot, float)[None, :]
            lo, hi = percentile_ci(np.where(boot > 0, boot, np.nan), axis=1)
    else:
        table["E"], delta = np.nan, np.full(len(loss), np.nan)
        lo, hi = delta, delta
    positive = delta > 0
    table["excess_loss"] = np.where(positive, delta, np.nan)
    table["excess_lo"], table["excess_hi"] = np.where(positive, lo, np.nan), np.where(positive, hi, np.nan)
    table["source"] = source
    reason = np.where(np.isfinite(delta), "loss at or below E: no positive excess loss", "E unavailable")
    reason = np.where(np.isfinite(loss), reason, _no_loss_reasons(checkpoints))
    table["reason"] = np.where(positive, None, reason)
    return table[list(EXCESS_COLUMNS)]


def _no_loss_reasons(checkpoints: pd.DataFrame) -> list[str]:
    """Why each checkpoint has no loss: its cross-entropy error, else its own error, else no scored tokens."""
    out = []
    for row in checkpoints.to_dict("records"):
        ce_error, error = (row.get(c) if isinstance(row.get(c), str) and row.get(c).strip() else None
                           for c in ("ce_error", "error"))
        out.append(f"no loss: its cross-entropy failed ({ce_error})" if ce_error else
                   f"no loss: the checkpoint failed ({error})" if error else
                   "no loss: no held-out tokens were scored for its cross-entropy")
    return out
