"""Prints the verdicts of reference-family-v2 runs side by side (one column per run, e.g. per build seed) and
whether they agree: the README's seed comparison.

Usage: ``python benchmarks/readme_v2_verdicts.py RUN_DIR [RUN_DIR ...]`` where each RUN_DIR holds a run of the v2
suites, analysed (``emergence run`` writes ``analysis.json``; ``emergence analyze RUN --trained-k 1 2 3 4`` for a
snapshot whose family folder is elsewhere).
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from harness.records import answer_failure, checkpoint_loss
from harness.storage.run_files import load_run


def _ci(entry: dict, stem: str) -> str:
    return f"{entry[stem]:+.3f} [{entry[stem + '_lo']:+.3f}, {entry[stem + '_hi']:+.3f}]"


def verdicts(run_dir: Path) -> dict[str, str]:
    """Row label -> this run's verdict (a short text)."""
    analyses = json.loads((run_dir / "analysis.json").read_text())["analyses"]
    run = load_run(run_dir)
    ck = run["checkpoints"].copy()
    ck["loss"] = checkpoint_loss(ck)[0].to_numpy()
    final = ck.sort_values("step").groupby("size").tail(1).sort_values("params")
    out = {"final CE falls strictly with size": "yes" if bool(np.all(np.diff(final["loss"]) < 0)) else "no"}
    emergence = pd.DataFrame(analyses["emergence"].get("emergence", []))
    for mode in ("chain", "conjunction"):
        rows = emergence[emergence["mode"] == mode].sort_values("k") if len(emergence) else emergence
        above = " ".join(str(int(r["k"])) for r in rows.to_dict("records") if (r.get("n_above_chance") or 0) > 0)
        out[f"emergence, {mode}: k above chance at some checkpoint (Holm over checkpoints)"] = f"k = {above or 'none'}"
        out[f"breakpoint loss by k, {mode} (exact match)"] = " ".join(
            f"{int(r['k'])}: {r['breakpoint_loss']:.2f}" for r in rows.to_dict("records")
            if r.get("breakpoint_loss") is not None and np.isfinite(r["breakpoint_loss"]))
    largest = final.iloc[-1]
    rec = run["records"]
    beyond = rec[(rec["checkpoint_id"] == largest["checkpoint_id"]) & (rec["metric"] == "exact_match")
                 & (rec["k"] > 4) & (pd.to_numeric(rec["n_shots"], errors="coerce").fillna(0) == 0)]
    kinds = answer_failure(beyond).value_counts(normalize=True)
    out[f"k = 5..8 at {largest['label']}: right / format / skill"] = (
        f"{kinds.get('none', 0):.2f} / {kinds.get('format', 0):.2f} / {kinds.get('skill', 0):.2f}" if len(kinds)
        else "n/a (no answers beyond the trained k)")
    for t in analyses["slingshot"].get("tests", []):
        value = t["verdict"] if t.get("reason") is None else f"not testable: {t['reason']}"
        out[f"slingshot {t['mode']} {t['k']} -> {t['k2']}"] = f"{value}, {_ci(t, 'mean_diff')}" if t.get(
            "reason") is None else value
    for t in analyses["collapse"].get("tests", []):
        out[f"collapse test, {t['mode']}"] = t["verdict"]
    for t in analyses["collapse"].get("tests", []):
        c, lo, hi = (t.get(key) for key in ("c_shared", "c_shared_lo", "c_shared_hi"))
        out[f"collapse exponent c, {t['mode']} (A&G: 1)"] = (
            f"{'holds 1' if lo <= 1.0 <= hi else 'excludes 1'}: c = {c:.2f} [{lo:.2f}, {hi:.2f}]"
            if c is not None and lo is not None and np.isfinite([c, lo, hi]).all()
            else f"n/a ({t.get('c_shared_reason') or 'not run'})")
    gap = analyses["seen_heldout"]
    out["held-out gap intervals excluding 0, largest trained k"] = (
        f"{gap['n_cells_ci_excludes_0_largest_k']} of {gap['n_cells_largest_k']}")
    out["held-out gap intervals excluding 0, all k"] = f"{gap['n_cells_ci_excludes_0']} of {gap['n_cells']}"
    out["failure law vs A&G's linear law"] = analyses["ag_failure"].get("linear_law") or "n/a"
    trend = analyses["shots"].get("trend", [])
    excl = sum(1 for t in trend if t["mean_gain_lo"] > 0 or t["mean_gain_hi"] < 0)
    out["in-context gain intervals excluding 0 (k x step)"] = f"{excl} of {len(trend)}"
    return out


def main() -> None:
    runs = [Path(a) for a in sys.argv[1:]]
    columns = [verdicts(r) for r in runs]
    names = [r.name for r in runs]
    print("| verdict | " + " | ".join(names) + " | agree |")
    print("|---" * (len(runs) + 2) + "|")
    for label in columns[0]:
        values = [c.get(label, "n/a") for c in columns]
        heads = {re.split(r"[,:\[]", v)[0].strip() for v in values}
        agree = "-" if any(re.fullmatch(r"[\d.\s/+-]+|\d+ of \d+", h) for h in heads) else "yes" if len(heads) == 1 else "no"
        print(f"| {label} | " + " | ".join(values) + f" | {agree} |")


if __name__ == "__main__":
    main()
