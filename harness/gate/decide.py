"""The gate's decisions: per check passed / failed / not decidable, per stage passed when every check passed.

Floor: H0 competence <= floor against H1 competence > floor (pass), and the mirror test (fail), on the
candidate's items. Non-inferiority: H0 mean(C) - mean(B) <= -margin (pass) and its mirror (fail), on
items scored on both. Both use the cluster-robust t test of `harness.analysis.paired.cluster_mean_test`
(clusters = skill tuples; items when a check holds a single tuple, since then the tuple is fixed and its
items are the independent draws). Pass and fail p-values are each adjusted across the checks of a stage;
neither adjusted p below alpha is "not decidable", with the items a check would need for `power`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from harness.analysis.paired import adjust_pvalues, cluster_mean_test, one_sided_p
from harness.gate.policy import Policy, Stage
from harness.records import CHECKPOINT_COLUMNS, checkpoint_loss

PASSED, FAILED, UNDECIDED, SKIPPED = "passed", "failed", "not decidable", "not run"
MAX_ITEMS = 1_000_000
"""Items-needed estimates above this are reported as "more than" it (the estimate is at the threshold)."""


@dataclass(frozen=True)
class CheckResult:
    """One check of one stage."""

    stage: str
    """Stage name."""
    check: str
    """What is checked, e.g. ``noninferiority k=2 mode=chain``."""
    kind: str
    """``floor``, ``noninferiority`` or ``cross_entropy``."""
    verdict: str
    """passed, failed, not decidable or not run."""
    estimate: float
    """Candidate competence (floor), mean(C) - mean(B) (non-inferiority) or relative CE change."""
    lo: float
    """Lower end of the two-sided 1 - 2 alpha interval (the one-sided tests' bounds)."""
    hi: float
    """Upper end of that interval."""
    threshold: float
    """The floor, -margin, or the largest accepted CE increase."""
    p_pass: float
    """Adjusted p-value of the test whose rejection passes the check."""
    p_fail: float
    """Adjusted p-value of the test whose rejection fails the check."""
    n_items: int
    """Items (pairs) behind the check."""
    n_clusters: int
    """Independent units (skill tuples, or items within a single tuple)."""
    items_needed: float
    """For a check not decided: items for `power` at the observed estimate and design effect; else NaN."""
    note: str = ""
    """Why a check could not be computed, or how to read it."""


def _groups(stage: Stage, pairs: pd.DataFrame, families: dict[str, str]) -> list[tuple[str, pd.DataFrame]]:
    """The items of each check of a stage."""
    if stage.kind == "basic":
        rows = pairs[pairs["k"] == 1]
        key = {"skill": rows["skill_key"], "family": rows["skill_key"].map(lambda s: families.get(s, s)),
               "all": pd.Series("all", index=rows.index)}[stage.by[0]] if len(stage.by) else rows["skill_key"]
        return [(f"{stage.by[0] if stage.by else 'skill'}={name}", g) for name, g in rows.groupby(key, sort=True)]
    rows = pairs[pairs["k"] > 1]
    if stage.ks:
        rows = rows[rows["k"].isin(stage.ks)]
    if not stage.by:
        return [("all", rows)] if len(rows) else []
    return [(" ".join(f"{c}={v}" for c, v in zip(stage.by, key if isinstance(key, tuple) else (key,))), g)
            for key, g in rows.groupby(list(stage.by), sort=True)]


def _units(rows: pd.DataFrame) -> np.ndarray:
    return (rows["skill_key"] if rows["skill_key"].nunique() > 1 else rows["item_id"]).to_numpy()


def _needed(test, distance: float, policy: Policy, n_checks: int) -> float:
    """Items for `policy.power` at the Bonferroni level (Holm's first step), normal approximation."""
    if not np.isfinite(test.se) or test.n == 0:
        return float("nan")
    if abs(distance) < 1e-12:
        return float(MAX_ITEMS)
    z = sps.norm.ppf(1 - policy.alpha / max(1, n_checks)) + sps.norm.ppf(policy.power)
    return float(min(MAX_ITEMS, math.ceil(test.n * (z * test.se / distance) ** 2)))


def _check(stage: Stage, name: str, kind: str, rows: pd.DataFrame, policy: Policy) -> dict:
    """Raw (unadjusted) statistics of one floor or non-inferiority check."""
    if kind == "floor":
        g = float(rows["chance"].mean()) if rows["chance"].notna().any() else 0.0
        scale, null = 1.0 - g, g + stage.floor * (1.0 - g)
        test = cluster_mean_test(rows["c"].to_numpy(float), _units(rows), bounds=(0.0, 1.0))
        threshold, to_scale = stage.floor, (lambda x: float(np.clip((x - g) / scale, -np.inf, 1.0)))
    else:
        null = -stage.margin
        test = cluster_mean_test((rows["c"] - rows["b"]).to_numpy(float), _units(rows), bounds=(-1.0, 1.0))
        threshold, to_scale = -stage.margin, (lambda x: float(np.clip(x, -1.0, 1.0)))
    half = sps.t.ppf(1 - policy.alpha, test.df) * test.se if test.df >= 1 else float("nan")
    return dict(stage=stage.name, check=f"{kind} {name}", kind=kind, estimate=to_scale(test.estimate),
                lo=to_scale(test.estimate - half), hi=to_scale(test.estimate + half), threshold=threshold,
                p_pass=one_sided_p(test, null, "greater"), p_fail=one_sided_p(test, null, "less"),
                n_items=test.n, n_clusters=test.n_clusters, test=test, distance=test.estimate - null,
                note="" if test.df >= 1 else "fewer than 2 independent units")


def decide_stage(stage: Stage, pairs: pd.DataFrame, policy: Policy, families: dict[str, str]) -> list[CheckResult]:
    """All checks of a score-based stage, adjusted across the stage.

    Args:
        stage: a ``basic`` or ``composite`` stage.
        pairs: one row per item: item_id, k, mode, split, skill_key, chance, b (baseline), c (candidate);
            b may be NaN for items the baseline did not score (floor checks use c only).
        policy: the policy (alpha, multiplicity, power).
        families: skill name -> skill family (for ``by: family``).
    """
    raw = []
    for name, rows in _groups(stage, pairs, families):
        if stage.floor is not None:
            raw.append(_check(stage, name, "floor", rows.dropna(subset=["c"]), policy))
        if stage.margin is not None:
            raw.append(_check(stage, name, "noninferiority", rows.dropna(subset=["b", "c"]), policy))
    if not raw:
        return [CheckResult(stage.name, "no items", "none", UNDECIDED, *[math.nan] * 6, 0, 0, math.nan,
                            "the run has no items this stage checks")]
    p_pass = adjust_pvalues(np.array([r["p_pass"] for r in raw]), policy.multiplicity)
    p_fail = adjust_pvalues(np.array([r["p_fail"] for r in raw]), policy.multiplicity)
    out = []
    for r, pp, pf in zip(raw, p_pass, p_fail):
        verdict = PASSED if pp < policy.alpha else FAILED if pf < policy.alpha else UNDECIDED
        test, distance = r.pop("test"), r.pop("distance")
        needed = _needed(test, distance, policy, len(raw)) if verdict == UNDECIDED else math.nan
        out.append(CheckResult(**{**r, "p_pass": float(pp), "p_fail": float(pf)}, verdict=verdict,
                               items_needed=needed))
    return out


def decide_cross_entropy(stage: Stage, baseline: pd.Series, candidate: pd.Series) -> list[CheckResult]:
    """Relative change of the corpus loss (`checkpoint_loss`: nats/token, or bits/byte when the two tokenizers
    differ); a point comparison (the run stores corpus sums only)."""
    both = pd.DataFrame([baseline, candidate]).reindex(columns=list(CHECKPOINT_COLUMNS))
    loss, _, unit = checkpoint_loss(both)
    b, c = float(loss.iloc[0]), float(loss.iloc[1])
    change = c / b - 1.0 if b > 0 else math.nan
    verdict = UNDECIDED if not np.isfinite(change) else PASSED if change <= stage.max_increase else FAILED
    note = "no corpus cross-entropy in the run" if not np.isfinite(change) else \
        f"point comparison: {b:.4f} -> {c:.4f} {unit} (the run stores the corpus sum, no interval)"
    return [CheckResult(stage.name, "cross-entropy", "cross_entropy", verdict, change, math.nan, math.nan,
                        stage.max_increase, math.nan, math.nan, int(candidate.get("ce_tokens") or 0), 0,
                        math.nan, note)]


def stage_verdict(results: list[CheckResult]) -> str:
    """passed when every check passed; failed when any failed; otherwise not decidable."""
    verdicts = {r.verdict for r in results}
    return FAILED if FAILED in verdicts else PASSED if verdicts == {PASSED} else UNDECIDED
