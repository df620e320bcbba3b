"""Training throughput of the reference family: tokens/s and wall time per size of a preset.

Builds the whole family with `build_family` into a temporary folder; per-size times are the
trainer's own (`train_size` returns them: the step loop plus checkpoint saves), the total also
counts the token stream, held-out entropy and manifest. See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import _common as C


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny", help="tiny (default), default (the shipped v2 family), v1 or large")
    p.add_argument("--workers", type=int, default=None, help="sizes trained side by side (default: as `zoo build`)")
    p.add_argument("--steps", type=int, default=None, help="override the preset's optimizer steps")
    p.add_argument("--seed", type=int, default=0, help="weight-initialisation seed")
    p.add_argument("--threads", type=int, default=None, help="training threads (default: the preset's own)")
    p.add_argument("--keep", default=None, help="build into this folder and keep it (default: a temporary folder)")
    p.add_argument("--quick", action="store_true", help="the tiny preset cut to 50 steps")
    args = p.parse_args()
    if args.quick:
        args.preset, args.steps = "tiny", min(args.steps or 50, 50)
    return args


def build_timed(preset, keep: str | None, seed: int, workers: int) -> tuple[list, float, dict]:
    """Runs `build_family`; returns each size's `SizeResult`, the total seconds and (non-embedding, total) params."""
    import harness.zoo.family as family

    results = []
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        out = Path(keep).resolve() if keep else Path(tmp) / preset.name
        started = time.perf_counter()
        family.build_family(preset, out, seed=seed, progress=False, workers=workers, on_size=results.append)
        total = time.perf_counter() - started
        params = {s.name: (C.nonembedding_params(out / s.name), _total_params(out / s.name)) for s in preset.sizes}
    return sorted(results, key=lambda r: preset.sizes.index(r.size)), total, params


def main() -> None:
    args = parse_args()
    threads = C.set_threads(args.threads)
    from harness.zoo.presets import get_preset

    preset = get_preset(args.preset)
    full_steps = preset.steps
    full = {s.name: preset.steps_of(s) for s in preset.sizes}  # v2 presets give each size its own steps
    if args.steps:
        preset = dataclasses.replace(preset, steps=args.steps,
                                     sizes=tuple(dataclasses.replace(s, steps=0) for s in preset.sizes))
    if args.threads and hasattr(preset, "threads"):
        preset = dataclasses.replace(preset, threads=args.threads)
    threads = getattr(preset, "threads", threads)  # build_family trains with the preset's own thread count
    from harness.zoo.family import default_workers

    workers = args.workers or default_workers(preset)
    results, total, params = build_timed(preset, args.keep, args.seed, workers)
    rows = []
    total_tokens = 0
    for r in results:
        n_ne, n_all = params[r.size.name]
        steps = preset.steps_of(r.size)
        tokens = steps * preset.tokens_per_step
        total_tokens += tokens
        tail = r.losses[-10:]
        rows.append({"size": r.size.name, "d_model": r.size.d_model, "layers": r.size.n_layers, "params": n_all,
                     "params_nonembedding": n_ne, "steps": steps, "tokens": tokens, "seconds": r.seconds,
                     "tokens_per_s": tokens / r.seconds, "steps_per_s": steps / r.seconds,
                     "train_tflops": 6 * n_ne * tokens / r.seconds / 1e12,
                     "final_loss": sum(tail) / len(tail) if tail else float("nan"),
                     # a shortened run's rate carried to the preset's own steps: a projection, not a measurement
                     "projected_full_seconds": r.seconds / steps * full[r.size.name] if args.steps else None})
    rows.append({"size": "total (build_family)", "tokens": total_tokens, "seconds": total,
                 "tokens_per_s": total_tokens / total})
    C.print_table(f"build_family --preset {preset.name}: {preset.steps} steps x {preset.batch_size}x{preset.seq_len} "
                  f"tokens, {workers} size(s) side by side x {threads} thread(s)", rows,
                  ["size", "params", "params_nonembedding", "steps", "tokens", "seconds", "tokens_per_s",
                   "train_tflops", "final_loss"] + (["projected_full_seconds"] if args.steps else []))
    notes = ["seconds per size: the trainer's step loop including checkpoint and resume saves (model init excluded); "
             "total: the whole build_family call (token stream, every size, held-out entropy, manifest); with "
             "workers > 1 the sizes run side by side, so the total is less than their sum",
             "train_tflops = 6 * non-embedding params * tokens/s (forward + backward, attention omitted)"]
    if args.steps:
        notes.append(f"--steps {args.steps} replaced the preset's {full_steps} steps; projected_full_seconds = "
                     f"seconds / {args.steps} * {full_steps} (checkpoint saves and warm-up make it a rough projection)")
    for n in notes:
        print("note:", n)
    config = {**vars(args), "threads": threads, "workers": workers, "preset_resolved": dataclasses.asdict(preset)}
    name = f"training_{preset.name}" + (f"_{args.steps}steps" if args.steps and not args.quick else "")
    name += "_quick" if args.quick else ""
    print("wrote", C.write_result(name, rows, config, notes))


def _total_params(folder: Path) -> int:
    try:
        from harness.checkpoints.weight_files import count_params_safetensors
    except ImportError:
        from harness.checkpoints.discovery import count_params_safetensors
    return count_params_safetensors(sorted(folder.glob("*.safetensors"))).total


if __name__ == "__main__":
    main()
