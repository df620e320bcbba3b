"""Calibration of the per-checkpoint competence intervals (the competence table and every interval built on it).

Truth: a cell's population mean competence, E[exp(-lam k^a delta^b e^eta)] over the item and tuple
effects eta (Gauss-Hermite quadrature), which is what a cluster bootstrap over skill tuples claims to
cover. Skill effects are set to 0 here: with 8 fixed skills shared by the tuples of a composite cell
the truth would be conditional on the run's skills, which the simulator does not expose. The
analyzer's default 200 bootstrap replicates are used (the percentiles of an expanded interval sit
in the tails, where 99 replicates are too few). Coverage is the per-run share of (checkpoint, k)
cells whose interval holds the truth, averaged over runs (a run's cells share items).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from benchmarks.calibration.rows import CalibrationRow, run_coverage_row
from benchmarks.calibration.simulate import FLOOR, V1, Design, Scenario
from benchmarks.calibration.theory import AG, _replicate, analysed
from harness.analysis.stats import percentile_ci

NO_SKILL_EFFECTS = AG.with_(name="no skill effects", skill_sd=0.0)
"""a = b = 1.5, tuple sd 0.4 (composite cells), item sd 0.3, no skill effects."""
N_BOOT_ANALYZER = 200
"""The analyzer's default number of bootstrap replicates."""


def true_competence(sc: Scenario, k: int, delta: float) -> float:
    """Population mean competence of a k cell at excess loss delta under the ``"weibull"`` generator."""
    nodes, w = np.polynomial.hermite_e.hermegauss(60)
    sd = np.sqrt(sc.skill_sd ** 2 / k + (sc.tuple_sd ** 2 if k > 1 else 0.0) + sc.item_sd ** 2)
    return float((w / w.sum()) @ np.exp(-sc.lam * k ** sc.a * delta ** sc.b * np.exp(sd * nodes)))


def competence_cells(sc: Scenario, seed: int) -> list[dict[str, float]]:
    """Per exact-match (checkpoint, k) cell of one run: k, the truth, the analyzer's interval and the plain one."""
    _, comp, boot = analysed(sc, seed, n_boot=N_BOOT_ANALYZER)
    plain_lo, plain_hi = percentile_ci(boot["competence"], axis=1)
    out = []
    for i in np.flatnonzero((comp["metric"] == "exact_match").to_numpy()):
        r = comp.iloc[i]
        out.append({"k": int(r["k"]), "truth": true_competence(sc, int(r["k"]), float(r["loss"]) - FLOOR),
                    "lo": float(r["competence_lo"]), "hi": float(r["competence_hi"]),
                    "plain_lo": float(plain_lo[i]), "plain_hi": float(plain_hi[i])})
    return out


def competence_rows(n_reps: int, seed: int, design: Design = V1) -> list[CalibrationRow]:
    """Coverage of the per-checkpoint competence intervals at chance 0.12 and 0.5 (k = 1 and k = 2-4 apart).

    Another `design` than `V1`: at chance 0 (most v2 cells) on the design's checkpoints, k = 1, the trained
    composite k and the k beyond them apart, without the replaced interval.
    """
    if design != V1:
        return _design_rows(n_reps, seed, design)
    rows = []
    for i, chance in enumerate((0.12, 0.5)):
        sc = NO_SKILL_EFFECTS.with_(chance=chance)
        runs = _replicate(lambda s: competence_cells(sc, s), n_reps, seed + 91 + i)
        scen = (f"a = b = 1.5, chance {chance}, tuple sd 0.4, item sd 0.3, no skill effects, 12 ckpts, "
                f"{N_BOOT_ANALYZER} bootstrap replicates")
        rows.append(run_coverage_row(runs, (1,), "competence interval per checkpoint, k = 1 (8 skill clusters)", scen))
        rows.append(run_coverage_row(runs, (2, 3, 4), "competence interval per checkpoint, k = 2-4 (20 tuples per cell)",
                              scen))
        rows.append(run_coverage_row(runs, (1, 2, 3, 4), "competence interval per checkpoint [replaced: plain percentile], "
                              "k = 1-4", scen, lo="plain_lo", hi="plain_hi", reported_only=True))
    return rows


def _design_rows(n_reps: int, seed: int, design: Design) -> list[CalibrationRow]:
    sc = design.apply(NO_SKILL_EFFECTS)
    runs = _replicate(lambda s: competence_cells(sc, s), n_reps, seed + 95)
    scen = (f"a = b = 1.5, chance 0, tuple sd 0.4, item sd 0.3, no skill effects, {N_BOOT_ANALYZER} bootstrap "
            f"replicates, {design.words}")
    trained = tuple(k for k in sc.trained_ks or sc.ks if k > 1)
    beyond = tuple(k for k in sc.ks if k > max(trained))
    name, clusters = "competence interval per checkpoint", 2 * sc.tuples_per_cell
    rows = [run_coverage_row(runs, (1,), f"{name}, k = 1 ({len(sc.skills)} skill clusters)", scen),
            run_coverage_row(runs, trained, f"{name}, k = {min(trained)}-{max(trained)} ({clusters} tuples per cell)", scen)]
    if beyond:
        rows.append(run_coverage_row(runs, beyond, f"{name}, k = {min(beyond)}-{max(beyond)} beyond the trained k "
                              f"({clusters} tuples per cell)", scen))
    return rows


ROW_FUNCTIONS: tuple[Callable[[int, int], list[CalibrationRow]], ...] = (competence_rows,)
"""Every calibration of this module, in table order."""
DESIGN_ROW_FUNCTIONS: tuple[Callable[..., list[CalibrationRow]], ...] = (competence_rows,)
"""Those that take a ``design`` (``bench_calibration.py --design``)."""


def rows(n_reps: int, seed: int) -> list[CalibrationRow]:
    """All rows of this module."""
    return [row for fn in ROW_FUNCTIONS for row in fn(n_reps, seed)]
