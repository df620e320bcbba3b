"""Pilot of reference family v2: a reduced family (3 sizes, 2 000 steps for the largest) and the v2 suite on it.

Evidence that the v2 design can tell format failures from skill failures beyond the trained k; not the
shipped family. Trains with `build_family` (per-size steps and lr by the v2 rule, 1 thread), runs
`emergence run` with the v2 composite and held-out text suites on the final checkpoints, and prints
exact match at k = 1..4 and, at k = 5..8, the share of format and skill failures
(`harness.records.answer_failure`). See README "Reference family v2".

    OMP_NUM_THREADS=1 python benchmarks/pilot_v2.py --out DIR
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

SHAPES = (("n20k", 32, 2, 2), ("n150k", 64, 3, 4), ("n400k", 96, 4, 4))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder of the pilot family and its run")
    p.add_argument("--steps", type=int, default=2000, help="steps of the largest size (others by the v2 rule)")
    p.add_argument("--skip-train", action="store_true", help="reuse a family already built in --out")
    return p.parse_args()


def train(out: Path, steps: int) -> None:
    from harness.zoo.family import build_family
    from harness.zoo.presets import get_preset, scaled_sizes

    preset = replace(get_preset("default"), name="v2-pilot", sizes=scaled_sizes(SHAPES, max_steps=steps), steps=steps,
                     threads=1)
    t0 = time.perf_counter()
    build_family(preset, out / "family", seed=0, progress=False)
    print(f"trained {[(s.name, s.steps, s.peak_lr) for s in preset.sizes]} in {time.perf_counter() - t0:.0f} s")


def score(out: Path) -> Path:
    family = out / "family"
    folders = [str(family / name) for name, *_ in SHAPES]
    cmd = [sys.executable, "-m", "harness", "run", "--family", *folders, "--tasks", "symbolic_v2_composite.yaml", "symbolic_v2_shots.yaml",
           "symbolic_v2_heldout_text.yaml", "--out", str(out / "runs"), "--cache-dir", str(out / "cache"),
           "--no-analyze"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return max((out / "runs").glob("*/records.parquet"), key=lambda p: p.stat().st_mtime)


def summarize(records_path: Path) -> None:
    from harness.records import answer_failure

    ck = pd.read_parquet(records_path.with_name("checkpoints.parquet"))
    ck["ce"] = ck["ce_nats_sum"] / ck["ce_tokens"]
    print("held-out cross-entropy (nats/token; floor: the family manifest's heldout_text):\n"
          + ck[["label", "params", "step", "ce"]].round(3).to_string(index=False))
    rec = pd.read_parquet(records_path)
    rec = rec[rec["metric"] == "exact_match"].copy()
    rec["failure"] = answer_failure(rec)
    low = rec[rec["k"] <= 4].pivot_table(index="checkpoint_label", columns=["k", "split"], values="value",
                                         aggfunc="mean")
    print("exact match, k = 1..4 (all shots):\n" + low.round(2).to_string())
    high = rec[rec["k"] >= 5]
    share = (high.groupby(["checkpoint_label", "k"])["failure"].value_counts(normalize=True).unstack(fill_value=0.0))
    print("k = 5..8: share of answers that are right / format failures / skill failures:\n" + share.round(2).to_string())
    by_split = high.groupby(["checkpoint_label", "split"])["failure"].value_counts(normalize=True).unstack(fill_value=0.0)
    print("k = 5..8 by split:\n" + by_split.round(2).to_string())
    shots = rec.pivot_table(index="checkpoint_label", columns=["n_shots"], values="value", aggfunc="mean")
    print("exact match by shots (all k):\n" + shots.round(3).to_string())


def main() -> None:
    args = parse_args()
    out = Path(args.out)
    if not args.skip_train:
        train(out, args.steps)
    summarize(score(out))


if __name__ == "__main__":
    main()
