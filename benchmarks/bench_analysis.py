"""Wall time of the analyzer on ~100k synthetic records, and of writing the analysis and the HTML report.

Records come from the test suite's synthetic family generator (tests/analysis/synthetic.py,
imported by path): 8 checkpoints, k = 1..4, two modes, four metrics, A&G competence, 1% failed
records. The report rows are skipped with a note when `harness.report.build` is not importable.
See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

import _common as C

ROOT = Path(__file__).resolve().parent.parent
SYNTHETIC = ROOT / "tests" / "analysis" / "synthetic.py"
N_CHECKPOINTS, N_METRICS, N_TUPLES, N_MODES, N_KS_COMPOSITE, N_SKILLS = 8, 4, 12, 2, 3, 8


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=100_000, help="approximate number of records")
    p.add_argument("--n-boot", type=int, default=200, help="bootstrap replicates (the runner's default is 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic family and of the bootstraps")
    p.add_argument("--quick", action="store_true", help="10k records and 20 bootstrap replicates")
    args = p.parse_args()
    if args.quick:
        args.records, args.n_boot = min(args.records, 10_000), min(args.n_boot, 20)
    return args


def synthetic_module():
    """tests/analysis/synthetic.py, imported by path (tests are not a package the project installs)."""
    spec = importlib.util.spec_from_file_location("bench_synthetic", SYNTHETIC)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def synthetic_family(n_records: int, seed: int):
    """(records, checkpoints) with about `n_records` rows: items per tuple scaled, 5x as many per single skill."""
    syn = synthetic_module()
    per_item = N_CHECKPOINTS * N_METRICS
    per_tuple = max(1, round(n_records / per_item / (5 * N_SKILLS + N_KS_COMPOSITE * N_TUPLES * N_MODES)))
    return syn.make_family(syn.ag_competence(lam=2.0), seed=seed,
                           item_kw=dict(n_tuples=N_TUPLES, items_per_tuple=per_tuple, items_per_skill=5 * per_tuple),
                           record_kw=dict(p_fail=0.01))


def write_run_dir(folder: Path, records, checkpoints) -> Path:
    """A run directory as the runner leaves it: records, checkpoints and cross-entropy tables."""
    import pandas as pd

    from harness.storage.run_files import write_table

    folder.mkdir(parents=True)
    ce = pd.DataFrame({"checkpoint_id": checkpoints["checkpoint_id"], "task": "synthetic", "source": "synthetic",
                       "nats_sum": checkpoints["ce_nats_sum"], "n_tokens": checkpoints["ce_tokens"],
                       "n_bytes": checkpoints["ce_tokens"], "n_docs": 1,
                       "entropy_nats": checkpoints["entropy_floor"] * checkpoints["ce_tokens"],
                       "entropy_floor": checkpoints["entropy_floor"], "error": None})
    write_table(folder / "records.parquet", records)
    write_table(folder / "checkpoints.parquet", checkpoints.assign(error=None))
    write_table(folder / "cross_entropy.parquet", ce)
    return folder


def report_rows(run_dir: Path, n_boot: int, seed: int) -> tuple[list[dict], list[str]]:
    try:
        from harness.analysis.io import write_analysis
        from harness.report.build import write_report
    except ImportError as exc:
        return [], [f"report rows skipped: harness.report.build is not importable ({exc})"]
    rows = []
    _, seconds = C.timed(write_analysis, run_dir, seed=seed, n_boot=n_boot)
    rows.append({"step": "write_analysis (analyze + tables)", "seconds": seconds, "peak_rss_mb": C.peak_rss_mb()})
    path, seconds = C.timed(write_report, run_dir)
    rows.append({"step": "write_report (figures + html)", "seconds": seconds, "peak_rss_mb": C.peak_rss_mb(),
                 "output_mb": path.stat().st_size / 2**20})
    return rows, []


def main() -> None:
    args = parse_args()
    from harness.analysis.analyze import analyze

    (records, checkpoints), seconds = C.timed(synthetic_family, args.records, args.seed)
    rows = [{"step": "generate synthetic records", "records": len(records), "seconds": seconds,
             "peak_rss_mb": C.peak_rss_mb()}]
    result, seconds = C.timed(analyze, records, checkpoints, seed=args.seed, n_boot=args.n_boot)
    status = {name: a.get("status") for name, a in result.summary["analyses"].items()}
    bad = {name: s for name, s in status.items() if s != "ok"}
    rows.append({"step": f"analyze (n_boot {args.n_boot})", "records": len(records), "seconds": seconds,
                 "peak_rss_mb": C.peak_rss_mb()})
    with tempfile.TemporaryDirectory(prefix="bench-analysis-") as tmp:
        run_dir = write_run_dir(Path(tmp) / "run", records, checkpoints)
        more, notes = report_rows(run_dir, args.n_boot, args.seed)
    rows += [{"records": len(records), **r} for r in more]
    C.print_table(f"analysis of {len(records)} synthetic records ({N_CHECKPOINTS} checkpoints)", rows,
                  ["step", "records", "seconds", "peak_rss_mb", "output_mb"])
    notes += [f"analyses not ok: {bad}" if bad else "every analysis step returned status ok",
              "the analyzer runs BLAS single-threaded by design (blas_single_thread)"]
    for n in notes:
        print("note:", n)
    print("wrote", C.write_result("analysis" + ("_quick" if args.quick else ""), rows, vars(args), notes,
                                  analysis_status=status))


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - t0:.1f} s")
