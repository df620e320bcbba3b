"""Calibration of the verdicts printed in the README findings and the report headline that `theory` does not cover.

* Emergence detection: the per-cell family of above-chance tests (exact binomial per checkpoint, Holm across
  the checkpoints of a cell) under a truth exactly at chance.
* Seen vs held-out gap: per-cell intervals and their "excludes 0" reading when the population gap is 0
  (seen and held-out tuples are drawn from the same pool; tuple effects make any one draw differ).
* Single-skill failure-law exponent b: coverage against the pseudo-true b and the size of the
  "disagrees with A&G's linear law" verdict.

Same pattern as `theory`: simulate (`simulate`), run the analyzer's own steps, count.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from benchmarks.calibration.rows import CalibrationRow, coverage_row, power_row, size_row
from benchmarks.calibration.simulate import V1, Design, Scenario
from benchmarks.calibration.theory import AG, _covers, _replicate, analysed
from harness.analysis import pipeline_steps as steps

AT_CHANCE_LAM = 1e6
"""Failure-hazard scale that puts every item at its chance level at every checkpoint (q = exp(-1e6 ...) = 0)."""


def _per_run_rate(name: str, scenario: str, per_run: list[float], quantity: str, nominal: float,
                  target: str, ok: Callable[[float, float], bool], n_reps: int) -> CalibrationRow:
    """A rate measured per run (over that run's cells) and averaged; the s.e. is over runs (cells share items)."""
    v = np.asarray(per_run, float)
    good = np.isfinite(v)
    est = float(v[good].mean()) if good.any() else float("nan")
    se = float(v[good].std(ddof=1) / np.sqrt(good.sum())) if good.sum() > 1 else float("nan")
    return CalibrationRow(name, scenario, quantity, nominal, est, se, int(good.sum()), target, bool(ok(est, se)),
                          n_reps - int(good.sum()))


def _above_run(sc: Scenario, seed: int, holm: bool = True) -> pd.DataFrame:
    """Per cell: whether any checkpoint was called above chance (the family-wise rejection of the cell)."""
    p, comp, boot = analysed(sc, seed)
    out, _ = steps.emergence(comp, boot, p.sums, p.config)
    above = out["above_chance"]
    if not holm:  # the planted bug of the seeded test: raw p-values, no multiplicity control
        above = above.assign(above_chance=above["p_value"] < 0.05)
    return above.groupby(["mode", "k"])["above_chance"].apply(lambda s: bool(s.eq(True).any())).reset_index()


def emergence_rows(n_reps: int, seed: int, design: Design = V1) -> list[CalibrationRow]:
    """Family-wise size of the above-chance tests of one cell (all checkpoints, Holm) under a truth at chance."""
    rows = []
    # v2's single-skill items have chance 0.019 on average (up to 0.13), its composite items about 0
    for chance in (0.12, 0.5) if design == V1 else (0.02, 0.12):
        sc = design.apply(AG.with_(lam=AT_CHANCE_LAM, chance=chance))
        runs = _replicate(lambda s: _above_run(sc, s), n_reps, seed + 41 + int(chance * 100))
        scen = (f"every item at chance {chance} at every checkpoint (tuple and item effects as in the simulator), "
                f"{design.words}")
        per_cell = [float(r["above_chance"].mean()) for r in runs]
        rows.append(_per_run_rate("emergence above-chance tests, any checkpoint of a cell (Holm, per cell)", scen,
                                  per_cell, "size", 0.05, "<= 0.06 + 2 s.e.",
                                  lambda e, s: e <= 0.06 + 2 * s, n_reps))
        anywhere = sum(bool(r["above_chance"].any()) for r in runs)
        n_cells = len(sc.modes) * len(sc.ks)
        old = size_row(f"emergence above-chance tests, any of the run's {n_cells} cells", scen, anywhere, len(runs))
        rows.append(CalibrationRow(**{**old.__dict__, "target": "reported only (Holm is per cell, not per run)",
                                      "passed": True}))
    return rows


def _gap_run(sc: Scenario, seed: int) -> tuple[float, float, bool]:
    """(fraction of cells whose gap interval excludes 0, same at the largest trained k, whether any cell of the
    largest trained k excludes 0)."""
    p, _, _ = analysed(sc, seed)
    out, _ = steps.seen_heldout(p.sums, p.weights, p.clusters, p.config)
    t = out["seen_heldout"]
    t = t[(t["metric"] == "exact_match") & t["gap_lo"].notna()]
    excl = ((t["gap_lo"] > 0) | (t["gap_hi"] < 0)).to_numpy()
    top = (t["k"] == max(sc.trained_ks or sc.ks)).to_numpy()
    return (float(excl.mean()) if len(excl) else np.nan, float(excl[top].mean()) if top.any() else np.nan,
            bool(excl[top].any()))


def gap_rows(n_reps: int, seed: int, design: Design = V1) -> list[CalibrationRow]:
    """Per-cell rate at which the seen minus held-out interval excludes 0 when the population gap is 0."""
    sc = design.apply(AG)
    runs = _replicate(lambda s: _gap_run(sc, s), n_reps, seed + 51)
    where = "12 ckpts, k 2-4" if design == V1 else design.words
    scen = ("no seen/held-out difference (both splits' tuples drawn from one pool, tuple sd 0.4, item sd 0.3), "
            f"a = b, {where}")
    return [_per_run_rate("seen vs held-out gap interval excludes 0 (per cell)", scen, [r[0] for r in runs], "size",
                          0.05, "<= 0.06 + 2 s.e.", lambda e, s: e <= 0.06 + 2 * s, n_reps),
            _per_run_rate("seen vs held-out gap interval excludes 0 (per cell, largest trained k)", scen,
                          [r[1] for r in runs], "size", 0.05, "<= 0.06 + 2 s.e.", lambda e, s: e <= 0.06 + 2 * s,
                          n_reps)]


def gap_power_rows(n_reps: int, seed: int, design: Design = V1) -> list[CalibrationRow]:
    """How the gap verdict reads a true gap: held-out tuples harder by a failure-hazard factor e^0.5 or e (and none,
    for the run-level rate): per cell of the largest trained k, and whether any of its cells (one per checkpoint and
    mode) excludes 0, the README's "N of M cell intervals exclude 0" at that k. Reported only: no target is set."""
    rows = []
    where = "12 ckpts, k 2-4" if design == V1 else design.words
    top_k = max(design.apply(AG).trained_ks or design.apply(AG).ks)
    for shift in (0.0, 0.5, 1.0):
        sc = design.apply(AG.with_(heldout_shift=shift))
        runs = _replicate(lambda s: _gap_run(sc, s), n_reps, seed + 55 + int(10 * shift))
        truth = ("no seen/held-out difference" if shift == 0 else
                 f"held-out tuples harder (failure hazard x {np.exp(shift):.2f})")
        scen = f"{truth}, tuple sd 0.4, item sd 0.3, a = b, {where}"
        if shift:
            rows.append(_per_run_rate(f"seen vs held-out gap interval excludes 0 (per cell, k = {top_k})", scen,
                                      [r[1] for r in runs], "power", float("nan"), "reported only",
                                      lambda e, s: True, n_reps))
        anywhere = size_row(f"seen vs held-out gap: some cell of k = {top_k} excludes 0 (per run)", scen,
                            int(sum(r[2] for r in runs)), len(runs))
        rows.append(CalibrationRow(**{**anywhere.__dict__, "quantity": "size" if shift == 0 else "power",
                                      "nominal": float("nan"), "target": "reported only", "passed": True}))
    return rows


STRONG_TUPLES = AG.with_(tuple_sd=1.0, item_sd=0.1)
"""Tuple effects dominating item effects: the clusters matter most."""


def gap_strong_rows(n_reps: int, seed: int) -> list[CalibrationRow]:
    """As `gap_rows` with strong tuple effects (10 tuples per split and cell, as in the simulator)."""
    runs = _replicate(lambda s: _gap_run(STRONG_TUPLES, s), n_reps, seed + 53)
    scen = "no seen/held-out difference, strong tuple effects (tuple sd 1.0, item sd 0.1), a = b, 12 ckpts, k 2-4"
    return [_per_run_rate("seen vs held-out gap interval excludes 0 (per cell)", scen, [r[0] for r in runs], "size",
                          0.05, "<= 0.06 + 2 s.e.", lambda e, s: e <= 0.06 + 2 * s, n_reps)]


POWER_LAW = AG.with_(name="power law", generator="power", lam=0.3)
"""Single-skill failure exactly c delta^b in the mean (no item clipped at 1 over these checkpoints), b known."""


def _failure_run(sc: Scenario, seed: int) -> tuple[float, float, str]:
    """(b_lo, b_hi, linear-law reading) of the analyzer's failure-law fit on one simulated run."""
    p, comp, boot = analysed(sc, seed)
    _, fit = steps.ag_failure(comp, boot, p.config, p.seed, p.n_boot)
    return float(fit.get("b_lo", np.nan)), float(fit.get("b_hi", np.nan)), str(fit.get("linear_law"))


def failure_law_rows(n_reps: int, seed: int, design: Design = V1) -> list[CalibrationRow]:
    """Coverage of b's interval where the failure law holds with b = 1 and 1.5, and the size of the
    "disagrees with A&G's linear law" verdict at b = 1; on the saturating (weibull) truth, reported only
    (`V1` only: another `design` leaves that row out)."""
    rows = []
    where = "12 ckpts" if design == V1 else design.words
    for b in (1.0, 1.5):
        sc = design.apply(POWER_LAW.with_(a=b, b=b))
        runs = _replicate(lambda s: _failure_run(sc, s), n_reps, seed + 61 + int(10 * b))
        scen = f"single-skill failure c delta^b (per item, c = 0.3 e^eta), b = {b}, {where}"
        cov, n, fail = _covers(((lo, hi) for lo, hi, _ in runs), b)
        rows.append(coverage_row("failure-law exponent b interval", scen, cov, n, fail))
        says = [v.startswith("the data disagree") for _, _, v in runs if v != "None"]
        verdict = "linear-law verdict 'the data disagree with A&G's linear law'"
        if b == 1.0:
            rows.append(size_row(verdict, scen, int(sum(says)), len(says), len(runs) - len(says)))
        else:
            rows.append(power_row(verdict, scen, int(sum(says)), len(says), 0.0, len(runs) - len(says)))
            rows[-1] = CalibrationRow(**{**rows[-1].__dict__, "target": "reported only", "passed": True})
    if design != V1:
        return rows
    sat = _replicate(lambda s: _failure_run(AG.with_(a=1.0, b=1.0), s), n_reps, seed + 71)
    says = [v.startswith("the data disagree") for _, _, v in sat if v != "None"]
    old = size_row("linear-law verdict 'the data disagree with A&G's linear law'",
                   "hazard linear in delta but failure 1 - exp(-2 delta e^eta) saturates (a = b = 1, weibull): "
                   "the power law is misspecified", int(sum(says)), len(says), len(sat) - len(says))
    rows.append(CalibrationRow(**{**old.__dict__, "quantity": "power", "nominal": float("nan"),
                                  "target": "reported only (misspecified: b of the power law is not 1 here)",
                                  "passed": True}))
    return rows


ROW_FUNCTIONS: tuple[Callable[[int, int], list[CalibrationRow]], ...] = (emergence_rows, gap_rows, gap_strong_rows,
                                                                         failure_law_rows)
"""Every calibration of this module, in table order."""
DESIGN_ROW_FUNCTIONS: tuple[Callable[..., list[CalibrationRow]], ...] = (emergence_rows, gap_rows, gap_power_rows,
                                                                        failure_law_rows)
"""Those that take a ``design`` (``bench_calibration.py --design``)."""


def rows(n_reps: int, seed: int) -> list[CalibrationRow]:
    """All rows of this module."""
    return [row for fn in ROW_FUNCTIONS for row in fn(n_reps, seed)]
