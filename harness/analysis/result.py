"""The analyzer's settings and output: `AnalysisConfig`, `AnalysisResult` and a JSON-safe summary helper."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis import (ag_bound, ag_failure, collapse, competence, composable, cor13, emergence, excess,
                              failure_kinds, generalization, paired, product_rule, shots, slingshot)


@dataclass(frozen=True)
class AnalysisConfig:
    """Settings of `analyze` beyond the seed and bootstrap size."""

    metric: str = "exact_match"
    """Primary metric of the product rule, Arora-Goyal checks, collapse test and largest k."""
    n_column: str = "params_nonembedding"
    """Checkpoint column used as N in the scaling law ("params" when this one is missing)."""
    level: float = 0.5
    """Chance-corrected competence that defines the largest composable k."""
    gap_threshold: float = 0.9
    """Single-skill accuracy at which a skill counts as right in the compositionality gap."""
    tail_alpha: float = 0.1
    """alpha of the Arora-Goyal tail bound (fraction of skills the bound may miss)."""
    n_holdout: int = 2
    """Lowest-loss checkpoints held out by the forecasting test."""
    reference_checkpoint: str | None = None
    """Checkpoint on which the failure law is calibrated; None picks the one with failure nearest 1/2."""
    test_level: float = 0.05
    """Significance level of the above-chance, collapse and breakpoint tests."""
    trained_ks: tuple[int, ...] | None = None
    """k the family was trained on (the built-in family: 1-4, read from its manifest by `write_analysis`).
    The collapse test, Cor. 13, largest composable k and the product-rule median use only these k and
    report the others as out of distribution; None treats every administered k as trained."""
    n_forecast_boot: int = 60
    """Cluster-bootstrap refits per curve form behind the forecast prediction intervals."""


TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "scaling": excess.SCALING_COLUMNS, "excess_loss": excess.EXCESS_COLUMNS,
    "competence": competence.COMPETENCE_COLUMNS, "competence_fits": competence.FIT_COLUMNS,
    "competence_params": competence.PARAM_COLUMNS, "competence_forecast": competence.FORECAST_COLUMNS,
    "competence_curves": competence.CURVE_COLUMNS, "above_chance": emergence.ABOVE_COLUMNS,
    "emergence": emergence.EMERGENCE_COLUMNS, "mirage": emergence.MIRAGE_COLUMNS,
    "product_rule": product_rule.PRODUCT_COLUMNS, "ag_failure": ag_failure.FAILURE_COLUMNS,
    "ag_failure_fit": ag_failure.FAILURE_FIT_COLUMNS, "ag_ktuple": ag_failure.KTUPLE_COLUMNS,
    "ag_tail_bound": ag_bound.BOUND_COLUMNS, "collapse": collapse.COLLAPSE_COLUMNS,
    "ag_cor13": cor13.COR13_COLUMNS, "ag_cor13_summary": cor13.COR13_SUMMARY_COLUMNS,
    "composable_k": composable.COMPOSABLE_COLUMNS, "composable_scaling": composable.SCALING_COLUMNS,
    "seen_heldout": generalization.GAP_COLUMNS, "paired": paired.PAIRED_COLUMNS,
    "failure_kinds": failure_kinds.FAILURE_KIND_COLUMNS, "slingshot": slingshot.SLINGSHOT_COLUMNS,
    "slingshot_summary": slingshot.SLINGSHOT_SUMMARY_COLUMNS, "shots_gain": shots.SHOTS_COLUMNS,
    "shots_trend": shots.SHOTS_TREND_COLUMNS,
}
"""Columns of every tidy table in an `AnalysisResult` (present even when the table is empty)."""
TABLES: tuple[str, ...] = tuple(TABLE_COLUMNS)
"""Names of the tidy tables in an `AnalysisResult`, in report order."""


@dataclass(frozen=True)
class AnalysisResult:
    """Everything `analyze` derived: tidy tables (one DataFrame per kind of observation) and a summary."""

    scaling: pd.DataFrame
    """Scaling-law fits, one row per variant (free_E, fixed_E); see `excess.SCALING_COLUMNS`."""
    excess_loss: pd.DataFrame
    """Per checkpoint: loss, E, excess loss and its interval; see `excess.EXCESS_COLUMNS`."""
    competence: pd.DataFrame
    """Per (checkpoint, mode, k, metric): counts, mean, chance, competence with intervals."""
    competence_fits: pd.DataFrame
    """Per (mode, k, metric, form): NLL, AIC, delta AIC."""
    competence_params: pd.DataFrame
    """Per (mode, k, metric, form, param): fitted value."""
    competence_forecast: pd.DataFrame
    """Held-out lowest-loss checkpoints: predicted vs observed success with its Jeffreys interval."""
    competence_curves: pd.DataFrame
    """Fitted competence on a grid of x per (mode, k, metric, form), for plotting."""
    above_chance: pd.DataFrame
    """Per (checkpoint, mode, k, binary metric): exact binomial p-value and Holm-adjusted p-value."""
    emergence: pd.DataFrame
    """Per (mode, k, metric): above-chance count, onset, sharpness, breakpoint with interval."""
    mirage: pd.DataFrame
    """Per (mode, k): sharpness under exact match, partial credit, gold log-prob and a verdict."""
    product_rule: pd.DataFrame
    """Per (checkpoint, mode, k): observed vs product-predicted competence, ratio, compositionality gap."""
    ag_failure: pd.DataFrame
    """Per checkpoint: single-skill failure with fitted and calibrated f = c delta^b."""
    ag_failure_fit: pd.DataFrame
    """One row: c, b with interval, reference checkpoint."""
    ag_ktuple: pd.DataFrame
    """Per (checkpoint, mode, k): observed composite failure vs min(1, k f1) and 1 - (1 - f1)^k."""
    ag_tail_bound: pd.DataFrame
    """Per (checkpoint, mode, k): theta, beta*, bound and the fraction of skills inside it."""
    collapse: pd.DataFrame
    """Per composite mode: a, b with intervals, cluster-bootstrap tests of a = b and a = 1, verdict, and the
    non-parametric shared-curve test."""
    ag_cor13: pd.DataFrame
    """Per (checkpoint, mode, k): Cor. 13, composite competence vs single-skill competence at k delta."""
    ag_cor13_summary: pd.DataFrame
    """Per (mode, k): mean Cor. 13 difference over checkpoints with interval."""
    composable_k: pd.DataFrame
    """Per (checkpoint, mode): largest composable k at the configured level."""
    composable_scaling: pd.DataFrame
    """Per mode: log-log slope of k* on excess loss with interval."""
    seen_heldout: pd.DataFrame
    """Per (checkpoint, mode, k, metric): seen minus held-out competence with interval."""
    paired: pd.DataFrame
    """Adjacent checkpoints (by loss) per (mode, k): clustered sign-flip test (Holm-adjusted across the cells of
    each pair) and paired bootstrap difference."""
    failure_kinds: pd.DataFrame
    """Per (checkpoint, mode, k, split): shares of right answers, format failures and skill failures."""
    slingshot: pd.DataFrame
    """Per (checkpoint, mode, k): held-out q_2k at delta against the held-out k-curve at 2 delta."""
    slingshot_summary: pd.DataFrame
    """Per (mode, k): mean slingshot difference over checkpoints with interval and verdict."""
    shots_gain: pd.DataFrame
    """Per (checkpoint, mode, k, step): held-out competence gain from one more in-context example."""
    shots_trend: pd.DataFrame
    """Per (mode, k, step): mean gain over checkpoints and its slope on loss, with intervals."""
    summary: dict[str, Any] = field(default_factory=dict)
    """JSON-serializable overview: counts, settings and each analysis' status, reason and key numbers."""

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tidy tables by name, in `TABLES` order."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "summary"}


def summary_records(frame: pd.DataFrame, columns: tuple[str, ...] | list[str]) -> list[dict[str, Any]]:
    """Rows of a table for the summary, where an absent text value is None rather than NaN.

    pandas stores a missing string as NaN (a column of reasons where some rows have none), which
    `jsonable` would list as a number "not estimable from these data". A column counts as text
    when its dtype is not numeric, or when its name is "reason", ends in "_reason" or is one of
    `TEXT_FIELDS` (an all-missing text column has a float dtype).
    """
    frame = frame.reindex(columns=list(columns))
    text = [c for c in frame.columns if _is_text(c, frame[c])]
    rows = frame.to_dict("records")
    for row in rows:
        for column in text:
            value = row[column]
            if value is pd.NA or (isinstance(value, float) and math.isnan(value)):
                row[column] = None
    return rows


TEXT_FIELDS: frozenset[str] = frozenset({"verdict", "at_bound", "censored", "mode", "form", "variant", "metric",
                                         "linear_law", "reference"})
"""Summary fields that hold text (a missing one is None, never a missing number)."""


def _is_text(name: str, column: pd.Series) -> bool:
    if name == "reason" or name.endswith("_reason") or name in TEXT_FIELDS:
        return True
    return not (pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column))


MISSING = "missing"
"""Key under which a summary object (an analysis entry, or one record or mapping inside it) says why each of its
own missing numbers is missing: field name -> reason (see `summary_entry`, read with `why_missing`)."""
_NOT_ESTIMABLE = "not estimable from these data"


def why_missing(node: Mapping[str, Any] | None) -> Mapping[str, str]:
    """Why each missing number of one summary object is missing, keyed by its field name (empty when none is)."""
    return (node or {}).get(MISSING) or {}


def missing_values(node: Any, path: str = "") -> list[tuple[str, str]]:
    """Every missing number below a summary object as ("fits[0].E", reason), in field order (for listing them)."""
    found: list[tuple[str, str]] = []
    if isinstance(node, list):
        for i, item in enumerate(node):
            found += missing_values(item, f"{path}[{i}]")
    elif isinstance(node, dict):
        why = why_missing(node)
        for key, value in node.items():
            if key == MISSING:
                continue
            where = f"{path}.{key}" if path else key
            found += [(f"{path}.{k}" if path else k, r) for k, r in why.items() if k == key or k.startswith(key + "[")]
            found += missing_values(value, where)
    return found


def summary_entry(highlights: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
    """One analysis' summary entry, JSON-safe: NaN becomes None, and every object in it (the entry, each record or
    mapping inside it) with missing numbers lists them under `MISSING` by field name.

    The reason for a missing field is the step's `reason` when the step was skipped; otherwise the reason the step
    gave for that field in that object's own `MISSING` mapping, else the object's own "reason" (a table row's), else
    the step's reason for that field name on the entry, else "not estimable from these data" ("infinite" for inf).

    Args:
        highlights: the step's summary values; any dict in it may carry `MISSING`: field -> reason.
        reason: why the whole step was skipped (None when it ran).
    """
    return _node(highlights, reason, why_missing(highlights), entry=True)


def _node(value: Any, reason: str | None, given: Mapping[str, str], entry: bool = False) -> Any:
    if isinstance(value, dict):
        own_why = why_missing(value)
        out = {str(k): _node(v, reason, given) for k, v in value.items() if k != MISSING}
        own = None if entry else out.get("reason")
        missing = {k: reason or own_why.get(k) or (own if isinstance(own, str) else None) or given.get(k, default)
                   for k, default in _missing_fields(out, value)}
        if missing:
            out[MISSING] = missing
        return out
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (list, tuple, np.ndarray, pd.Series)):
        return [_node(v, reason, given) for v in list(value)]
    return jsonable(value)


def _missing_fields(out: dict[str, Any], raw: dict[Any, Any]) -> list[tuple[str, str]]:
    """(field, default reason) of every non-finite number of one object ("xs[1]" inside a list of numbers)."""
    found = []
    for k, v in raw.items():
        if k == MISSING:
            continue
        items = list(v) if isinstance(v, (list, tuple, np.ndarray, pd.Series)) else None
        for i, x in enumerate(items if items is not None else [v]):
            if isinstance(x, np.ndarray) and x.ndim == 0:
                x = x.item()
            if isinstance(x, (np.floating, float)) and not math.isfinite(float(x)):
                found.append((f"{k}[{i}]" if items is not None else str(k),
                              _NOT_ESTIMABLE if math.isnan(float(x)) else "infinite"))
    return found


def jsonable(value: Any) -> Any:
    """Converts numpy/pandas values (nested in dicts, lists and tuples) to JSON types; NaN and inf become None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (list, tuple, np.ndarray, pd.Series)):
        return [jsonable(v) for v in list(value)]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(float(value)) else None
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    return str(value) if not isinstance(value, str) else value
