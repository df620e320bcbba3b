"""Calibration of the paired comparison and of the gate's non-inferiority test.

Own generator (not the analyzer's code): two checkpoints, A (candidate) and B (baseline), score the same
items. A comparison has suite-like cells: k = 1 (200 items over 8 skills, chance 0.25) and composite
cells for two modes x k = 2..6 (80 items each, spread over 20 skill tuples; chance 0.5 for conjunction,
0 for chain), about 1000 items in all as in `tasks/symbolic_composite.yaml`. An item's success
probability is g + (1 - g) expit(mu_cell + u_tuple + v_tuple,checkpoint + e_item + shift): tuple effects
u (sd 1) shared by both checkpoints, a checkpoint-specific tuple deviation v (sd `TAU`) that makes the
discordant pairs of a tuple move together (what breaks an item-level McNemar test), item effects e
(sd 1) shared by both. The true difference of a cell is computed by Gauss-Hermite quadrature.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special

from benchmarks.calibration.rows import CalibrationRow, coverage_row, power_row, size_row
from harness.analysis.paired import cluster_mean_test, one_sided_p, paired_comparison

TAU = 1.2
"""Sd of the checkpoint-specific tuple deviation (logit scale)."""
SD_TUPLE, SD_ITEM = 1.0, 1.0
"""Sd of the shared tuple and item effects (logit scale)."""
MARGIN = 0.05
"""The gate's default non-inferiority margin (5 points of success rate)."""
ALPHA = 0.05
"""Nominal level of every test."""
SHIFT_ALT = -1.0
"""Stated alternative of the two-sided test: the candidate's logits 1.0 lower in every cell (the true
differences, 0.03 to 0.19 by cell, are printed in the scenario)."""


@dataclass(frozen=True)
class Cell:
    """One (mode, k) cell of a simulated comparison."""

    mode: str
    """Composition mode (``single`` for k = 1)."""
    k: int
    """Skills per item."""
    n_items: int
    """Items in the cell."""
    n_tuples: int
    """Skill tuples (clusters) the items are spread over; every tuple gets at least one item."""
    mu: float
    """Mean logit of success above chance."""
    chance: float
    """Chance level g."""


def suite_cells(items_per_composite: int = 80, tuples_per_composite: int = 20) -> tuple[Cell, ...]:
    """The built-in suite's shape: k = 1 over 8 skills, then 2 modes x k = 2..6."""
    cells = [Cell("single", 1, 200, 8, 1.5, 0.25)]
    for mode, chance in (("conjunction", 0.5), ("chain", 0.0)):
        cells += [Cell(mode, k, items_per_composite, tuples_per_composite, 1.5 - 0.75 * (k - 1), chance)
                  for k in range(2, 7)]
    return tuple(cells)


_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(80)


def true_rate(cell: Cell, shift: float = 0.0) -> float:
    """Population success rate of a cell (items and tuples integrated out)."""
    sd = np.sqrt(SD_TUPLE ** 2 + TAU ** 2 + SD_ITEM ** 2)
    mean = float(np.sum(_WEIGHTS * special.expit(cell.mu + shift + sd * _NODES)) / np.sqrt(2 * np.pi))
    return cell.chance + (1 - cell.chance) * mean


def true_diff(cell: Cell, shift: float) -> float:
    """Population mean(A) - mean(B) when A's logits are shifted by `shift`."""
    return true_rate(cell, shift) - true_rate(cell)


def shift_for(cell: Cell, diff: float) -> float:
    """The logit shift of A that gives a population difference `diff` in `cell`."""
    return float(optimize.brentq(lambda s: true_diff(cell, s) - diff, -20.0, 20.0)) if diff else 0.0


def simulate(cells: tuple[Cell, ...], shifts: tuple[float, ...], rng: np.random.Generator) -> pd.DataFrame:
    """Records of one simulated comparison (checkpoint ids ``A`` and ``B``, metric exact_match)."""
    frames = []
    for j, (cell, shift) in enumerate(zip(cells, shifts)):
        tuple_of = np.concatenate([np.arange(cell.n_tuples),
                                   rng.integers(0, cell.n_tuples, cell.n_items - cell.n_tuples)])
        u, e = rng.normal(0, SD_TUPLE, cell.n_tuples)[tuple_of], rng.normal(0, SD_ITEM, cell.n_items)
        ids = [f"c{j}-i{i}" for i in range(cell.n_items)]
        skills = [f"c{j}t{t}" for t in tuple_of]
        for name, s in (("A", shift), ("B", 0.0)):
            v = rng.normal(0, TAU, cell.n_tuples)[tuple_of]
            p = cell.chance + (1 - cell.chance) * special.expit(cell.mu + u + v + e + s)
            frames.append(pd.DataFrame({"checkpoint_id": name, "item_id": ids, "skills": skills, "k": cell.k,
                                        "mode": cell.mode, "split": "seen", "metric": "exact_match",
                                        "value": (rng.random(cell.n_items) < p).astype(float),
                                        "chance": cell.chance, "cluster": tuple_of}))
    return pd.concat(frames, ignore_index=True)


def _noninferiority(records: pd.DataFrame, cells: tuple[Cell, ...]) -> np.ndarray:
    """Per cell, the one-sided p-value of H0: mean(A) - mean(B) <= -MARGIN (what the gate tests)."""
    a = records[records["checkpoint_id"] == "A"].reset_index(drop=True)
    b = records[records["checkpoint_id"] == "B"].reset_index(drop=True)
    d = a["value"].to_numpy() - b["value"].to_numpy()
    out = []
    for cell in cells:
        mask = ((a["mode"] == cell.mode) & (a["k"] == cell.k)).to_numpy()
        out.append(one_sided_p(cluster_mean_test(d[mask], a["cluster"].to_numpy()[mask]), -MARGIN, "greater"))
    return np.array(out)


def rows(n_reps: int, seed: int, n_boot: int = 200) -> list[CalibrationRow]:
    """Size, family-wise error, power and coverage of the paired comparison; size and power of the gate's test.

    Args:
        n_reps: simulated comparisons per scenario (>= 200 in the full study).
        seed: seed of the whole study.
        n_boot: bootstrap replicates of the difference interval.
    """
    cells = suite_cells()
    composite = np.array([c.k > 1 for c in cells])
    rng = np.random.default_rng(seed)
    shifts = {"null": tuple(0.0 for _ in cells), "alt": tuple(SHIFT_ALT for _ in cells),
              "margin": tuple(shift_for(c, -MARGIN) for c in cells)}
    truth = {name: np.array([true_diff(c, s) for c, s in zip(cells, sh)]) for name, sh in shifts.items()}
    tally: dict[str, list] = {key: [] for key in ("p_null", "adj_null", "cov_null", "p_alt", "cov_alt",
                                                  "ni_margin", "ni_null")}
    for rep in range(n_reps):
        for scenario in ("null", "alt", "margin"):
            records = simulate(cells, shifts[scenario], rng)
            if scenario == "margin":
                tally["ni_margin"].append(_noninferiority(records, cells))
                continue
            table = paired_comparison(records, "A", "B", n_boot=n_boot, seed=seed + rep)
            table = table.set_index(["mode", "k"]).loc[[(c.mode, c.k) for c in cells]]
            lo, hi = table["diff_lo"].to_numpy(float), table["diff_hi"].to_numpy(float)
            tally[f"p_{scenario}"].append(table["p_value"].to_numpy(float))
            tally[f"cov_{scenario}"].append((lo <= truth[scenario]) & (truth[scenario] <= hi))
            if scenario == "null":
                tally["adj_null"].append(table["p_adjusted"].to_numpy(float))
                tally["ni_null"].append(_noninferiority(records, cells))
    t = {key: np.array(value) for key, value in tally.items()}
    where = f"tuple effects sd {SD_TUPLE}, checkpoint x tuple sd {TAU}, chance 0 / 0.25 / 0.5, suite-like cells"
    return [
        size_row("paired_sign_flip", f"A = B, composite cells (80 items, 20 tuples), {where}",
                 int((t["p_null"][:, composite] < ALPHA).sum()), int(t["p_null"][:, composite].size)),
        size_row("paired_sign_flip", f"A = B, k = 1 cell (200 items, 8 skills), {where}",
                 int((t["p_null"][:, ~composite] < ALPHA).sum()), int(t["p_null"][:, ~composite].size)),
        size_row("paired_holm_family", f"A = B in all {len(cells)} cells (any adjusted rejection), {where}",
                 int((t["adj_null"] < ALPHA).any(axis=1).sum()), len(t["adj_null"])),
        power_row("paired_sign_flip", f"A worse by {_span(-truth['alt'][composite])}, composite cells (80 items, "
                  "20 tuples)", int((t["p_alt"][:, composite] < ALPHA).sum()), int(t["p_alt"][:, composite].size),
                  0.15),
        power_row("paired_sign_flip", f"A worse by {_span(-truth['alt'][~composite])}, k = 1 cell (200 items, 8 "
                  "skills)", int((t["p_alt"][:, ~composite] < ALPHA).sum()), int(t["p_alt"][:, ~composite].size),
                  0.10),
        coverage_row("paired_diff_interval", "composite cells, A = B and A with logits 1.0 lower",
                     int(t["cov_null"][:, composite].sum() + t["cov_alt"][:, composite].sum()),
                     int(2 * t["cov_null"][:, composite].size)),
        coverage_row("paired_diff_interval", "k = 1 cell (8 clusters), A = B and A with logits 1.0 lower",
                     int(t["cov_null"][:, ~composite].sum() + t["cov_alt"][:, ~composite].sum()),
                     int(2 * t["cov_null"][:, ~composite].size)),
        size_row("gate_noninferiority", f"A exactly {MARGIN:.2f} worse (the margin) per cell, {where}",
                 int((t["ni_margin"] < ALPHA).sum()), t["ni_margin"].size),
        power_row("gate_noninferiority", f"A = B, margin {MARGIN:.2f}, composite cells (80 items, 20 tuples)",
                  int((t["ni_null"][:, composite] < ALPHA).sum()), int(t["ni_null"][:, composite].size), 0.1),
    ]


def paired_rows(n_reps: int, seed: int) -> list[CalibrationRow]:
    """`rows` under the name ``bench_calibration.py --only paired_rows`` selects."""
    return rows(n_reps, seed)


ROW_FUNCTIONS = (paired_rows,)
"""Every calibration of this module (for ``bench_calibration.py --only``)."""


def _span(values: np.ndarray) -> str:
    return f"{values.min():.2f}" if np.ptp(values) < 0.005 else f"{values.min():.2f} to {values.max():.2f}"


def noninferiority_power(n_items: int, n_reps: int, seed: int, items_per_tuple: int = 4) -> float:
    """Power of the gate's test to pass an unchanged candidate at the default margin, per composite check.

    Equivalently (the test is a shifted t test) the power to fail a candidate 2 x MARGIN worse. Averaged
    over the suite's composite cells with `n_items` items spread over n_items / items_per_tuple tuples.
    """
    cells = tuple(c for c in suite_cells(n_items, max(2, n_items // items_per_tuple)) if c.k > 1)
    rng = np.random.default_rng(seed)
    p = np.array([_noninferiority(simulate(cells, tuple(0.0 for _ in cells), rng), cells) for _ in range(n_reps)])
    return float(np.mean(p < ALPHA))


def main() -> None:
    """Prints the rows (``--reps``, default 200) and the non-inferiority power by items per check."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for r in rows(args.reps, args.seed):
        print(f"{r.procedure:<22} {r.quantity:<8} {r.estimate:6.3f} ± {r.mc_se:5.3f}  {r.target:<18} "
              f"{'ok' if r.passed else 'FAIL'}  {r.scenario}")
    for n in (80, 320, 640, 960, 1280, 1600):
        print(f"gate_noninferiority power, unchanged candidate, margin {MARGIN}, {n} items per check "
              f"({n // 4} tuples): {noninferiority_power(n, args.reps, args.seed + n):.3f}")


if __name__ == "__main__":
    main()
