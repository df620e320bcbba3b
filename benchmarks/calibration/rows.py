"""One row of the calibration table: a test's size or power, or an interval's coverage, with its Monte Carlo error.

Every module of this package that calibrates a procedure exposes
``rows(n_reps: int, seed: int) -> list[CalibrationRow]``; ``benchmarks/bench_calibration.py`` collects
them into one table (and the seeded test-suite version runs the same functions with fewer replicates).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Quantity = Literal["size", "power", "coverage", "bias"]


@dataclass(frozen=True)
class CalibrationRow:
    """The measured behaviour of one procedure in one simulated scenario."""

    procedure: str
    """What is calibrated, as the analyzer names it (e.g. ``collapse_test_a_eq_b``)."""
    scenario: str
    """The simulated truth in words (e.g. ``a = b, tuple effects sd 0.5, chance 0.5``)."""
    quantity: Quantity
    """``size``: rejection rate under the null; ``power``: under the stated alternative;
    ``coverage``: how often the interval holds the truth; ``bias``: mean estimate minus truth."""
    nominal: float
    """The nominal level: 0.05 for a test's size, 0.95 for coverage; NaN for power and bias."""
    estimate: float
    """The measured rate (or mean bias) over the replicates."""
    mc_se: float
    """Monte Carlo standard error of `estimate`."""
    n_reps: int
    """Simulated runs behind the estimate (failed fits excluded and counted in `n_failed`)."""
    target: str
    """The acceptance rule in words, e.g. ``<= 0.06 + 2 s.e.``."""
    passed: bool
    """Whether `estimate` meets `target`."""
    n_failed: int = 0
    """Replicates whose procedure returned no answer (NaN); never counted as a rejection or a cover."""


def rate_se(rate: float, n: int) -> float:
    """Binomial Monte Carlo standard error of a rate measured on `n` replicates."""
    if n <= 0 or not math.isfinite(rate):
        return float("nan")
    return math.sqrt(max(rate * (1.0 - rate), 1.0 / n) / n)


def size_row(procedure: str, scenario: str, rejections: int, n: int, n_failed: int = 0,
             alpha: float = 0.05, slack: float = 0.01) -> CalibrationRow:
    """A test's size: passes when the rejection rate is at most ``alpha + slack + 2 s.e.``."""
    rate = rejections / n if n else float("nan")
    se = rate_se(rate, n)
    limit = alpha + slack
    return CalibrationRow(procedure, scenario, "size", alpha, rate, se, n,
                          f"<= {limit:.2f} + 2 s.e.", bool(rate <= limit + 2 * se), n_failed)


def power_row(procedure: str, scenario: str, rejections: int, n: int, minimum: float,
              n_failed: int = 0) -> CalibrationRow:
    """A test's power under a stated alternative: passes when at least `minimum` (no s.e. allowance)."""
    rate = rejections / n if n else float("nan")
    return CalibrationRow(procedure, scenario, "power", float("nan"), rate, rate_se(rate, n), n,
                          f">= {minimum:.2f}", bool(rate >= minimum), n_failed)


def coverage_row(procedure: str, scenario: str, covered: int, n: int, n_failed: int = 0,
                 nominal: float = 0.95, slack: float = 0.02) -> CalibrationRow:
    """An interval's coverage: passes when at least ``nominal - slack - 2 s.e.``."""
    rate = covered / n if n else float("nan")
    se = rate_se(rate, n)
    floor = nominal - slack
    return CalibrationRow(procedure, scenario, "coverage", nominal, rate, se, n,
                          f">= {floor:.2f} - 2 s.e.", bool(rate >= floor - 2 * se), n_failed)


def run_coverage_row(runs: list[list[dict]], ks: tuple[int, ...], procedure: str, scenario: str, lo: str = "lo",
                     hi: str = "hi", reported_only: bool = False) -> CalibrationRow:
    """Coverage of intervals of cells that share items within a run: the per-run share of the `ks` cells
    (dicts with ``k``, ``truth`` and the `lo`/`hi` bounds) whose interval holds the truth, averaged over runs,
    s.e. over runs (at least that of one Bernoulli draw per run). A cell without a finite interval counts as
    failed; `reported_only` marks a replaced interval, shown but not held to the target."""
    import numpy as np

    per_run, failed = [], 0
    for cells in runs:
        mine = [c for c in cells if c["k"] in ks]
        ok = [c for c in mine if np.isfinite(c[lo]) and np.isfinite(c[hi])]
        failed += len(mine) - len(ok)
        if ok:
            per_run.append(np.mean([c[lo] <= c["truth"] <= c[hi] for c in ok]))
    v = np.asarray(per_run, float)
    est = float(v.mean()) if len(v) else float("nan")
    se = float(max(v.std(ddof=1), np.sqrt(1.0 / len(v))) / np.sqrt(len(v))) if len(v) > 1 else float("nan")
    target = "reported only (the replaced interval)" if reported_only else ">= 0.93 - 2 s.e."
    passed = True if reported_only else bool(est >= 0.93 - 2 * se)
    return CalibrationRow(procedure, scenario, "coverage", 0.95, est, se, len(v), target, passed, failed)
