"""Measured dense matmul FLOP/s of this machine, and the share of it that scoring achieves.

Peak: the best ``2 n^3 / t`` of square matmuls (fp32 on CPU with the configured threads; fp32 and
bf16 on a GPU when present). Achieved: ``2 N positions/s`` of `HFModel.loglikelihood` on a composite
suite, N = non-embedding parameters, positions = inputs the model actually ran forward (a plain
fixed-shape forward is measured too, as the model's own ceiling). See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import _common as C

DEFAULT_TASK = {"builtin": "symbolic_composite.yaml", "neox100m": "natural_composite.yaml"}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="builtin,neox100m", help="comma list: builtin, neox100m or folders")
    p.add_argument("--family", default=None, help="family folder for builtin (default: the built-in one)")
    p.add_argument("--items", type=int, default=64, help="items of the scoring workload")
    p.add_argument("--shots", type=int, default=None,
                   help="few-shot exemplars per prompt (default: 1 builtin, 3 others)")
    p.add_argument("--batch-size", type=int, default=16, help="scoring batch size")
    p.add_argument("--sizes", default=None, help="matmul sizes n (default 1024,2048,3072 CPU; 4096,8192 GPU)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--dtype", default="float32", help="scoring dtype (bfloat16 only on a GPU)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: OMP_NUM_THREADS)")
    p.add_argument("--quick", action="store_true", help="tiny sizes for a smoke run")
    args = p.parse_args()
    if args.quick:
        args.items = min(args.items, 8)
    return args


def matmul_flops(n: int, dtype, device: str, min_seconds: float) -> float:
    """Best FLOP/s of ``a @ b`` for n x n matrices over repeated timed batches of calls."""
    import torch

    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b
    best, spent, calls = 0.0, 0.0, 1
    while spent < min_seconds:
        _, seconds = C.timed(lambda: [a @ b for _ in range(calls)])
        best = max(best, 2 * n**3 * calls / seconds)
        spent += seconds
        calls = min(calls * 2, 64) if seconds < 0.05 else calls
    return best


def peak_rows(args: argparse.Namespace, device: str) -> list[dict]:
    import torch

    gpu = device.startswith("cuda")
    sizes = [int(s) for s in (args.sizes or ("4096,8192" if gpu else "1024,2048,3072")).split(",")]
    if args.quick:
        sizes = [512, 1024] if not gpu else sizes[:1]
    dtypes = [torch.float32, torch.bfloat16] if gpu else [torch.float32]
    rows = []
    for dtype in dtypes:
        for n in sizes:
            flops = matmul_flops(n, dtype, device, 0.3 if args.quick else 2.0)
            rows.append({"what": "matmul", "device": device, "dtype": str(dtype).replace("torch.", ""), "n": n,
                         "tflops": flops / 1e12,
                         "tf32": bool(torch.backends.cuda.matmul.allow_tf32) if gpu else None})
    return rows


def scoring_requests(model: str, tokenizer_is_bpe: bool, n_items: int, shots: int) -> list:
    from harness.model.protocol import LoglikelihoodRequest
    from harness.run.task_files import load_task
    from skill_catalog.compose import compose_items

    task = load_task(DEFAULT_TASK["neox100m" if tokenizer_is_bpe else "builtin"])
    spec = dataclasses.replace(task.composition, ks=(1, 2, 3, 4), n_shots=shots)
    items = list(compose_items(spec))
    chosen = [items[round(j * len(items) / n_items)] for j in range(min(n_items, len(items)))]
    return [LoglikelihoodRequest(i.prompt, c) for i in chosen for c in i.choices]


def score_once(hf, requests: list) -> dict:
    """Times one scoring call on a fresh wrapper; counts request tokens of the requests that scored."""
    from harness.model.hf_model import HFModel
    from harness.model.protocol import encode_pair

    hf.loglikelihood(requests[:8])  # warm-up
    fresh = HFModel(hf.model, hf.tokenizer, hf.settings, hf.name)
    with C.count_positions(hf.model) as counts:
        results, seconds = C.timed(fresh.loglikelihood, requests)
    pairs = [encode_pair(hf._encode, r.context, r.continuation, hf.prefix_token_) for r in requests]
    tokens = sum(len(p.context) + len(p.continuation) for p, r in zip(pairs, results) if r.error is None)
    return {"positions": counts["positions"], "tokens": tokens, "seconds": seconds,
            "failed": sum(r.error is not None for r in results)}


def plain_forward(hf, batch: int, reps: int) -> tuple[int, float]:
    """(positions, seconds) of `reps` forwards of a random batch x min(256, max_length) block."""
    import torch

    seq = min(256, hf.max_length_)
    ids = torch.randint(0, len(hf.tokenizer), (batch, seq), device=hf.device_)
    with torch.inference_mode():
        hf.model(input_ids=ids)
        _, seconds = C.timed(lambda: [hf.model(input_ids=ids) for _ in range(reps)])
    return reps * ids.numel(), seconds


def model_rows(name: str, args: argparse.Namespace, device: str, peak: dict[str, float]) -> list[dict]:
    """Scoring and a plain forward on one model, with FLOP/s and utilization of the measured peak."""
    from harness.model.hf_model import HFModel, ModelSettings

    folder = C.model_folder(name, args.family)
    n = C.nonembedding_params(folder)
    settings = ModelSettings(device=device, dtype=args.dtype, batch_size=args.batch_size)
    hf = HFModel.from_checkpoint(C.checkpoint_at(folder), settings)
    shots = C.default_shots(name) if args.shots is None else args.shots
    requests = scoring_requests(name, len(hf.tokenizer) > 100, args.items, shots)
    s = score_once(hf, requests)
    positions, fwd = plain_forward(hf, args.batch_size, 2 if args.quick else 5)
    best = peak[args.dtype if device.startswith("cuda") else "float32"]
    common = {"model": f"{name} ({folder.name})", "shots": shots, "params_nonembedding": n, "dtype": args.dtype,
              "device": device, "failed_requests": s["failed"]}

    def row(what: str, tokens: int, seconds: float) -> dict:
        flops = 2 * n * tokens / seconds
        return {**common, "what": what, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
                "tflops": flops / 1e12, "utilization": flops / best}

    return [row("scoring (positions computed)", s["positions"], s["seconds"]),
            row("scoring (request tokens)", s["tokens"], s["seconds"]),
            row(f"plain forward {args.batch_size}x{min(256, hf.max_length_)}", positions, fwd)]


def main() -> None:
    args = parse_args()
    threads = C.set_threads(args.threads)
    from harness.model.hf_load import resolve_device
    from harness.offline import enforce_offline

    enforce_offline()
    device = str(resolve_device(args.device))
    started = time.perf_counter()
    peaks = peak_rows(args, device)
    peak = {}
    for r in peaks:
        peak[r["dtype"]] = max(peak.get(r["dtype"], 0.0), r["tflops"] * 1e12)
    C.print_table(f"dense matmul, {threads} torch threads", peaks, ["what", "device", "dtype", "n", "tflops", "tf32"])
    rows = []
    for name in args.models.split(","):
        rows += model_rows(name.strip(), args, device, peak)
    C.print_table(f"achieved 2*N*tokens/s (utilization = achieved / best measured {args.dtype} matmul)", rows,
                  ["model", "what", "tokens", "seconds", "tokens_per_s", "tflops", "utilization"])
    notes = ["N = non-embedding parameters; 2N FLOPs per token omits attention scores and the output "
             "projection (small here: vocab 24, or ~6.5K x 768 for the BPE model)",
             "scoring (positions computed) counts the forward positions actually run (padding included, "
             "prefix-cached tokens excluded); scoring (request tokens) counts every request's context + "
             "continuation, so it includes the work saved by deduplication and prefix reuse",
             f"wall time of the whole benchmark: {time.perf_counter() - started:.1f} s"]
    for n in notes:
        print("note:", n)
    config = {**vars(args), "threads": threads, "device_resolved": device}
    print("wrote", C.write_result("hardware" + ("_quick" if args.quick else ""), peaks + rows, config, notes,
                                  peak_tflops={k: v / 1e12 for k, v in peak.items()}))


if __name__ == "__main__":
    main()
