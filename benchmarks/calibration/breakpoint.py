"""Calibration of the exact-match breakpoint interval (emergence table) against a true breakpoint.

The simulator's ``"threshold"`` generator puts every item exactly at chance while k delta >= delta*
and lets it rise below, at a rate that differs by item, tuple and skill (the same items at every
checkpoint); a (mode, k) cell's mean competence therefore leaves chance at the known loss
FLOOR + delta* / k. Each row is the share of cells whose 95% interval holds that loss, averaged per
run (cells of one run share skill effects, so the s.e. is over runs), at chance 0, 0.12 and 0.5, for
the 8 clusters of k = 1 and the 20 tuples of each k = 2-4 cell apart, and with 6 checkpoints added
at high loss. The replaced interval (plain percentile, no checkpoint bracket) is reported beside.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from benchmarks.calibration.rows import CalibrationRow, run_coverage_row
from benchmarks.calibration.simulate import V1, Design, Scenario, true_breakpoint_loss
from benchmarks.calibration.theory import AG, _replicate, analysed
from harness.analysis import emergence as em

BREAKPOINT = AG.with_(name="true breakpoint", generator="threshold", a=1.0, lam=4.0, breakpoint_delta=0.5)
"""True breakpoints at delta* / k = 0.5, 0.25, 0.167, 0.125 (losses 1.34, 1.09, 1.007, 0.965), between
or near the 12 checkpoints (delta 0.03 to 0.8); rate 4 e^eta per unit of k delta below them."""
HIGH_LOSS = tuple(sorted(set(AG.deltas) | set(np.linspace(1.0, 2.2, 6).round(5))))
"""The 12 checkpoints plus 6 at high loss (delta 1.0 to 2.2), all at chance."""


def breakpoint_cells(sc: Scenario, seed: int, bracket: bool = True) -> list[dict[str, float]]:
    """Per exact-match (mode, k) cell of one simulated run: k, the truth, the estimate and its interval.

    Args:
        sc: a scenario of the ``"threshold"`` generator.
        seed: the run's seed.
        bracket: the analyzer's interval (True) or the replaced one (False: plain 95% percentile of the
            bootstrap refits, no checkpoint bracket).
    """
    prepared, comp, boot = analysed(sc, seed)
    clusters = em.clusters_per_cell(prepared.sums)
    out = []
    for key, rows in comp[comp["metric"] == "exact_match"].groupby(em.CELL, sort=True):
        eta, lo, hi, _ = em._breakpoint(rows, boot, clusters.get(key) if bracket else None, bracket=bracket)
        out.append({"k": int(key[1]), "truth": true_breakpoint_loss(sc, int(key[1])), "eta": eta, "lo": lo, "hi": hi})
    return out


def _run(sc: Scenario, seed: int) -> tuple[list[dict], list[dict]]:
    return breakpoint_cells(sc, seed), breakpoint_cells(sc, seed, bracket=False)


NAME = "breakpoint interval (exact match)"
OLD = "breakpoint interval [replaced: plain percentile, no checkpoint bracket]"


def breakpoint_rows(n_reps: int, seed: int, design: Design = V1) -> list[CalibrationRow]:
    """Coverage of the true breakpoint at chance 0, 0.12 and 0.5, and with 6 high-loss checkpoints added.

    Another `design` than `V1`: at chance 0 (most v2 cells) on the design's checkpoints, k = 1, the trained
    composite k and the k beyond them apart, without the replaced interval.
    """
    if design != V1:
        return _design_rows(n_reps, seed, design)
    rows = []
    designs = [(c, AG.deltas, "12 ckpts") for c in (0.0, 0.12, 0.5)] + [(0.12, HIGH_LOSS, "+6 ckpts at high loss")]
    for i, (chance, deltas, label) in enumerate(designs):
        sc = BREAKPOINT.with_(chance=chance, deltas=deltas)
        runs = _replicate(lambda s: _run(sc, s), n_reps, seed + 81 + i)
        new, old = [r[0] for r in runs], [r[1] for r in runs]
        scen = (f"true breakpoint at loss 0.84 + 0.5 / k, chance {chance}, tuple sd 0.4, item sd 0.3, {label}")
        rows.append(run_coverage_row(new, (1,), f"{NAME}, k = 1 (8 skill clusters)", scen))
        rows.append(run_coverage_row(new, (2, 3, 4), f"{NAME}, k = 2-4 (20 tuples per cell)", scen))
        rows.append(run_coverage_row(old, (1, 2, 3, 4), f"{OLD}, k = 1-4", scen, reported_only=True))
    return rows


def _design_rows(n_reps: int, seed: int, design: Design) -> list[CalibrationRow]:
    sc = design.apply(BREAKPOINT)
    runs = _replicate(lambda s: breakpoint_cells(sc, s), n_reps, seed + 85)
    scen = f"true breakpoint at loss 0.84 + 0.5 / k, chance 0, tuple sd 0.4, item sd 0.3, {design.words}"
    trained = tuple(k for k in sc.trained_ks or sc.ks if k > 1)
    beyond = tuple(k for k in sc.ks if k > max(trained))
    clusters = 2 * sc.tuples_per_cell
    rows = [run_coverage_row(runs, (1,), f"{NAME}, k = 1 ({len(sc.skills)} skill clusters)", scen),
            run_coverage_row(runs, trained, f"{NAME}, k = {_span(trained)} ({clusters} tuples per cell)", scen)]
    if beyond:
        rows.append(run_coverage_row(runs, beyond, f"{NAME}, k = {_span(beyond)} beyond the trained k ({clusters} tuples per "
                              "cell)", scen))
    return rows


def _span(ks: tuple[int, ...]) -> str:
    return f"{min(ks)}-{max(ks)}" if len(ks) > 1 else str(ks[0])


ROW_FUNCTIONS: tuple[Callable[[int, int], list[CalibrationRow]], ...] = (breakpoint_rows,)
"""Every calibration of this module, in table order."""
DESIGN_ROW_FUNCTIONS: tuple[Callable[..., list[CalibrationRow]], ...] = (breakpoint_rows,)
"""Those that take a ``design`` (``bench_calibration.py --design``)."""


def rows(n_reps: int, seed: int) -> list[CalibrationRow]:
    """All rows of this module."""
    return [row for fn in ROW_FUNCTIONS for row in fn(n_reps, seed)]
