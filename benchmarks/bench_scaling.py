"""Time and peak memory of `harness.run.runner.run` as items grow and as checkpoints are added.

Each measurement runs in its own child process (so its peak RSS is its own) with a fresh cache
and output folder; the last two rerun one configuration against its finished run folder and,
from a new run folder, against its warm cache (both should take seconds). See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as C

CELLS = 12
"""(k, mode, split) cells of the suite at k = 2..4: 3 ks x 2 modes x 2 splits; k = 1 adds 8 skills."""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", default=None, help="family folder (default: the built-in one)")
    p.add_argument("--items", default="1000,4000,16000", help="item counts of the items axis")
    p.add_argument("--checkpoints", default="1,2,4", help="checkpoint counts of the checkpoints axis")
    p.add_argument("--ckpt-items", type=int, default=None,
                   help="items per run on the checkpoints axis (default: the middle item count)")
    p.add_argument("--scoring", default="multiple_choice,gold_logprob",
                   help="scoring modes of the suite ('all' adds exact_match and partial_credit: generation)")
    p.add_argument("--batch-size", default="auto", help="runner batch size")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch threads of each child")
    p.add_argument("--tracemalloc", action="store_true", help="also trace the Python heap peak (slows runs)")
    p.add_argument("--quick", action="store_true", help="100/200/400 items and 1/2 checkpoints")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.items, args.checkpoints = "100,200,400", "1,2"
    return args


def task_file(folder: Path, n_items: int, scoring: str) -> Path:
    """A symbolic suite (k = 1..4, both modes, seen and held-out) of about `n_items` items."""
    per_cell = max(1, n_items // 20)
    single = max(1, (n_items - CELLS * per_cell) // 8)
    everything = ["exact_match", "partial_credit", "multiple_choice", "gold_logprob"]
    modes = everything if scoring == "all" else scoring.split(",")
    lines = ["name: scaling", "version: 1", "kind: composite", "skill_set: symbolic", "skills: all", "ks: [1, 2, 3, 4]",
             "modes: [conjunction, chain]", f"items: {{single_per_skill: {single}, per_cell: {per_cell}}}",
             "shots: 0", "choices: 4", f"scoring: [{', '.join(modes)}]", "seed: 0", "split_seed: 0",
             "max_new_tokens: 48"]
    path = folder / f"scaling-{n_items}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def child(spec: dict) -> None:
    """Runs one measurement and prints one RESULT line (timings, peak memory, counts)."""
    started = time.perf_counter()
    C.set_threads(spec["threads"])
    import torch

    if spec["tracemalloc"]:
        import tracemalloc

        tracemalloc.start()
    from harness.run.config import RunConfig
    from harness.run.runner import run

    config = RunConfig(family=tuple(spec["family"]), tasks=(spec["task"],), out=spec["out"], cache_dir=spec["cache"],
                       batch_size=spec["batch_size"], device=spec["device"], analyze=False)
    t0 = time.perf_counter()
    run_dir, failures = run(config)
    seconds = time.perf_counter() - t0
    import pandas as pd

    out = {"seconds": seconds, "child_seconds": time.perf_counter() - started, "peak_rss_mb": C.peak_rss_mb(),
           "n_records": len(pd.read_parquet(run_dir / "records.parquet")), "failures": failures,
           "cuda_max_allocated_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None}
    if spec["tracemalloc"]:
        out["python_heap_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
    print("RESULT " + json.dumps(out))


def measure(spec: dict) -> dict:
    """Runs `child` in a fresh process; returns its RESULT plus the process wall time."""
    env = {**os.environ, "TQDM_DISABLE": "1"}
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                          env=env)
    wall = time.perf_counter() - t0
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        return {"seconds": math.nan, "process_seconds": wall, "error": " | ".join(tail)}
    return {**json.loads(lines[-1][len("RESULT "):]), "process_seconds": wall, "error": None}


def checkpoint_order(family: str | None) -> list[dict]:
    """Manifest rows: the largest size's checkpoints (latest first, equal cost each), then other sizes' final ones."""
    rows = C.family_checkpoints(family)
    size = rows[0].get("size")
    largest = [r for r in rows if r.get("size") == size]
    others = [r for r in rows if r.get("size") != size and r.get("final", True)]
    return sorted(largest, key=lambda r: -(r.get("step") or 0)) + others


def family_file(folder: Path, rows: list[dict]) -> Path:
    """A family manifest naming exactly `rows` (a final checkpoint's folder would also bring its step folders)."""
    import yaml

    path = folder / f"family-{len(rows)}.yaml"
    path.write_text(yaml.safe_dump({"checkpoints": rows}, sort_keys=False))
    return path


def main() -> None:
    args = parse_args()
    if args.child:
        return child(json.loads(args.child))
    order = checkpoint_order(args.family)
    item_counts = [int(x) for x in args.items.split(",")]
    ckpt_counts = [int(x) for x in args.checkpoints.split(",")]
    ckpt_items = args.ckpt_items or item_counts[len(item_counts) // 2]
    base = {"batch_size": args.batch_size, "device": args.device, "threads": args.threads,
            "tracemalloc": args.tracemalloc}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        root = Path(tmp)

        def one(axis: str, n_items: int, n_ckpt: int, tag: str, out: Path | None = None, cache: Path | None = None):
            spec = {**base, "family": [str(family_file(root, order[:n_ckpt]))],
                    "task": str(task_file(root, n_items, args.scoring)),
                    "out": str(out or root / tag / "out"), "cache": str(cache or root / tag / "cache")}
            result = measure(spec)
            rows.append({"axis": axis, "items": n_items, "checkpoints": min(n_ckpt, len(order)), **result})
            r = rows[-1]
            print(f"  {axis:>12} items={n_items:<6} checkpoints={r['checkpoints']}  {r['seconds']:.2f} s  "
                  f"rss {r.get('peak_rss_mb', math.nan):.0f} MiB {r['error'] or ''}", flush=True)

        one("warm-up", item_counts[0], 1, "warm-up")  # first child pays cold disk caches; dropped below
        rows.clear()
        for n in item_counts:
            one("items", n, 1, f"items-{n}")
        for k in ckpt_counts:
            if k > len(order):
                print(f"  skipping {k} checkpoints: the family has {len(order)}")
                continue
            one("checkpoints", ckpt_items, k, f"ckpt-{k}")
        k = max(c for c in ckpt_counts if c <= len(order))
        done = root / f"ckpt-{k}"
        one("resume: run finished", ckpt_items, k, "resume", out=done / "out", cache=done / "cache")
        one("resume: warm cache", ckpt_items, k, "warm", out=root / "warm" / "out", cache=done / "cache")
    C.print_table(f"runner.run scaling ({args.scoring}; one child process per row)", rows,
                  ["axis", "items", "checkpoints", "n_records", "seconds", "process_seconds", "peak_rss_mb",
                   "cuda_max_allocated_mb", "python_heap_peak_mb", "error"])
    notes = ["seconds = wall time of runner.run inside the child; process_seconds adds interpreter start, imports "
             "and writing results; peak_rss_mb = the child's own ru_maxrss",
             "checkpoints axis: the largest size's checkpoints (latest first, equal cost each), then other sizes",
             "'resume: run finished' reruns the last checkpoints-axis configuration on its own run folder "
             "(every part exists: nothing is scored); 'resume: warm cache' runs it into a new run folder "
             "with the same cache (every request is a cache hit, models are still loaded)"]
    for n in notes:
        print("note:", n)
    config = {**vars(args), "checkpoint_order": [r.get("label", r["path"]) for r in order]}
    print("wrote", C.write_result("scaling" + ("_quick" if args.quick else ""), rows, config, notes))


if __name__ == "__main__":
    main()
