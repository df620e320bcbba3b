"""Calibration study of the analyzer's verdicts: size, power and coverage on simulated runs, one table.

Simulated runs (benchmarks/calibration/simulate.py, independent of the analyzer) share items across
checkpoints and cluster items by skill tuple; every procedure of benchmarks/calibration/ (theory.py and,
when present, paired.py) reports its rows. Writes benchmarks/results/calibration.json (or
calibration_quick.json). See benchmarks/README.md and the README section "How far to trust the verdicts".
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _common as C  # noqa: E402

MODULES: tuple[str, ...] = ("benchmarks.calibration.theory", "benchmarks.calibration.paired",
                          "benchmarks.calibration.verdicts", "benchmarks.calibration.slingshot",
                          "benchmarks.calibration.breakpoint", "benchmarks.calibration.intervals")
"""Modules whose ``rows(n_reps, seed)`` make up the table; a missing one is noted, not fatal."""
COLUMNS = ("procedure", "scenario", "quantity", "nominal", "estimate", "mc_se", "target", "passed", "n_reps",
           "n_failed")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=200, help="simulated runs per row (the issue asks for >= 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulations")
    p.add_argument("--quick", action="store_true", help="smoke run: 10 replicates per row")
    p.add_argument("--only", nargs="*", default=None,
                   help="row functions of theory.py to run (e.g. collapse_rows); default all modules. The result "
                        "file is then calibration_part_<first function>.json")
    p.add_argument("--markdown", action="store_true", help="also print the table as markdown (for the README)")
    p.add_argument("--merge", nargs="*", default=None,
                   help="result files of --only runs: print and write their rows as one table instead of simulating")
    p.add_argument("--design", choices=("v1", "v2"), default="v1",
                   help="suite and family design of the simulations: v1 (the first built-in suite, every row) or v2 "
                        "(reference family v2's suite and 42 checkpoints; only the row functions that take a design). "
                        "The result file is then calibration_v2[_part_...].json")
    args = p.parse_args()
    if args.quick:
        args.reps = 10
    return args


def collect(n_reps: int, seed: int, only: list[str] | None = None, design: str = "v1") -> tuple[list, list[str]]:
    """All calibration rows and notes (modules that are missing, wall time per module).

    Another design than v1 runs each module's ``DESIGN_ROW_FUNCTIONS`` with that design (`simulate.DESIGNS`).
    """
    from benchmarks.calibration.simulate import DESIGNS

    rows, notes = [], []
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as err:
            notes.append(f"{name} not available ({err}); its rows are missing")
            continue
        start = time.time()
        if design != "v1":
            for fn in getattr(module, "DESIGN_ROW_FUNCTIONS", ()):
                if not only or fn.__name__ in only:
                    rows += fn(n_reps, seed, design=DESIGNS[design])
        elif only and hasattr(module, "ROW_FUNCTIONS"):
            for fn in module.ROW_FUNCTIONS:
                if fn.__name__ in only:
                    rows += fn(n_reps, seed)
        elif not only:
            rows += module.rows(n_reps, seed)
        notes.append(f"{name}: {time.time() - start:.0f} s")
    return rows, notes


def merged(paths: list[str]) -> tuple[list[dict], list[str]]:
    """Rows and notes of several result files (e.g. two --only runs made in parallel).

    A row of a later file replaces the row of an earlier one with the same procedure, scenario and quantity
    (in the earlier one's place), so a rerun of some rows updates the table without the others being rerun.
    """
    import json

    rows: dict[tuple[str, str, str], dict] = {}
    notes = []
    for path in paths:
        payload = json.loads(Path(path).read_text())
        for row in payload["rows"]:
            rows[(row["procedure"], row["scenario"], row["quantity"])] = row
        notes += [f"{Path(path).name}: {n}" for n in payload["notes"]]
    return list(rows.values()), notes


def markdown(table: list[dict]) -> str:
    """The table as markdown: procedure, scenario, quantity, nominal, estimate ± MC s.e., target, pass."""
    def num(v: float) -> str:
        return "" if v is None or v != v else f"{v:.3f}"

    lines = ["| procedure | scenario | quantity | nominal | estimate ± MC s.e. | target | pass |",
             "|---|---|---|---|---|---|---|"]
    for r in table:
        est = f"{num(r['estimate'])} ± {num(r['mc_se'])}" if r["quantity"] != "bias" else \
            f"{r['estimate']:+.3f} ± {num(r['mc_se'])}"
        lines.append(f"| {r['procedure']} | {r['scenario']} | {r['quantity']} | {num(r['nominal'])} | {est} "
                     f"({r['n_reps']} runs{', ' + str(r['n_failed']) + ' failed' if r['n_failed'] else ''}) | "
                     f"{r['target']} | {'yes' if r['passed'] else '**no**'} |")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    C.set_threads(1)
    if args.merge:
        table, notes = merged(args.merge)
        notes = [n for n in notes if "rows meet their target" not in n]
        args.reps = min(r["n_reps"] + r["n_failed"] for r in table)
    else:
        rows, notes = collect(args.reps, args.seed, args.only, args.design)
        table = [{c: getattr(r, c) for c in COLUMNS} for r in rows]
    C.print_table(f"calibration ({args.reps} simulated runs per row)", table, COLUMNS)
    if args.markdown:
        print(markdown(table))
    failed = [r for r in table if not r["passed"]]
    notes.append(f"{len(table) - len(failed)} of {len(table)} rows meet their target")
    print(notes[-1])
    name = ("calibration" + ("" if args.design == "v1" or args.merge else f"_{args.design}")
            + ("_quick" if args.quick else "") + (f"_part_{args.only[0]}" if args.only else ""))
    print("wrote", C.write_result(name, table, vars(args), notes))


if __name__ == "__main__":
    main()
