"""Greedy generation speed and agreement of our `HFModel` against lm-evaluation-harness's HF backend.

Both tools continue the same natural few-shot prompts with the same stop sequences and token limit on the
same local checkpoint, in one process, the order of the tools alternating across repeats; lm-eval runs at
each batch size of ``--lm-batch-sizes`` once and is then timed at its fastest. A random-weight model rarely
emits a stop string, so rows run to the token limit: the mean generated length is reported, and
``--max-gen-toks`` sets the one limit both tools use. The log-likelihood comparison of
``bench_vs_lm_eval.py`` runs on the same model too (``--ll-items 0`` skips it). See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import tempfile
from pathlib import Path

import _common as C
import bench_vs_lm_eval as V

os.environ.setdefault("TQDM_DISABLE", "1")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="llama135m", help="llama135m (random 135M-shape Llama), neox100m, builtin "
                   "or a checkpoint folder")
    p.add_argument("--family", default=None, help="family folder for --model builtin")
    p.add_argument("--task", default="natural_composite.yaml", help="composite task file")
    p.add_argument("--selections", default="spread,per-cell", help="item selections, measured one after the other: "
                   "spread (evenly over the suite, its mix of k) and/or per-cell (the first "
                   "--per-cell items of every (k, mode, split) cell, as `emergence run --limit N` composes them)")
    p.add_argument("--per-cell", type=int, default=3, help="generation items per cell of the per-cell selection")
    p.add_argument("--items", type=int, default=None,
                   help="generation items of the spread selection (default: as many as the per-cell selection)")
    p.add_argument("--shots", type=int, default=3, help="few-shot exemplars per prompt")
    p.add_argument("--max-gen-toks", type=int, default=None, help="token limit of both tools (default: the task's)")
    p.add_argument("--batch-size", default="32", help="our batch size (rows per forward), or auto")
    p.add_argument("--lm-batch-sizes", default="8,32", help="lm-eval batch sizes tried; it is timed at its fastest")
    p.add_argument("--repeats", type=int, default=2, help="timed repeats per tool (order alternates)")
    p.add_argument("--ll-per-cell", type=int, default=2, help="log-likelihood items per cell (0: skip the comparison)")
    p.add_argument("--ll-items", type=int, default=None,
                   help="log-likelihood items of the spread selection (default: as many as per cell; 0: skip)")
    p.add_argument("--ll-batch-size", type=int, default=16, help="batch size of both tools for log-likelihood")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dtype", default="float32", help="float32 (CPU); bfloat16 on a GPU")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: OMP_NUM_THREADS)")
    p.add_argument("--quick", action="store_true", help="tiny sizes for a smoke run")
    args = p.parse_args()
    if args.quick:
        args.per_cell, args.repeats, args.ll_per_cell = 1, 1, min(args.ll_per_cell, 1)
        args.max_gen_toks = args.max_gen_toks or 8
        args.lm_batch_sizes = args.lm_batch_sizes.split(",")[0]
    if args.ll_items == 0:
        args.ll_per_cell = 0
    args.selections = [s.strip() for s in args.selections.split(",") if s.strip()]
    if not args.selections or set(args.selections) - set(C.SELECTIONS):
        p.error(f"--selections: a comma-separated subset of {','.join(C.SELECTIONS)}")
    return args


def generation_requests(task_file: str, shots: int, selection: str, per_cell: int, n_items: int | None,
                        max_gen_toks: int | None) -> tuple[list, dict]:
    """(our request, lm-eval instance) pairs of the items of `selection` (`_common.select_items`; k = 1..4)."""
    from lm_eval.api.instance import Instance

    from harness.model.protocol import GenerationRequest
    from harness.run.task_files import load_task
    from skill_catalog.compose import compose_items

    task = load_task(task_file)
    spec = dataclasses.replace(task.composition, ks=(1, 2, 3, 4), n_shots=shots)
    chosen = C.select_items(list(compose_items(spec)), selection, per_cell, n_items)
    limit = max_gen_toks or task.max_new_tokens
    pairs = []
    for idx, item in enumerate(chosen):
        ours = GenerationRequest(item.prompt, (item.stop,), limit)
        theirs = Instance("generate_until", {}, (item.prompt, {"until": [item.stop], "max_gen_toks": limit,
                                                               "do_sample": False}), idx)
        pairs.append((ours, theirs))
    return pairs, {"task": task.name, "items": len(chosen), "shots": shots, "max_gen_toks": limit,
                   **C.selection_facts(task, spec, selection, per_cell, chosen)}


def generation_run(ours, lm, pairs: list, args: argparse.Namespace) -> tuple[list[dict], dict]:
    """lm-eval at each batch size once, then both tools alternating at lm-eval's fastest batch size."""
    requests, instances = [r for r, _ in pairs], [i for _, i in pairs]
    n_context = sum(len(ours._encode(r.context)) for r in requests)
    V.fresh(ours).generate_until(requests[:2])  # warm both (first-call allocations, thread pools)
    lm.generate_until(instances[:2], disable_tqdm=True)
    scan = []
    for size in [int(s) for s in args.lm_batch_sizes.split(",")]:
        lm.batch_size_per_gpu = size
        _, seconds = C.timed(lambda: lm.generate_until(instances, disable_tqdm=True))
        scan.append({"lm_eval_batch_size": size, "seconds": seconds, "requests_per_s": len(instances) / seconds})
        print(f"lm-eval batch {size}: {seconds:.1f} s")
    best = min(scan, key=lambda r: r["seconds"])["lm_eval_batch_size"]
    lm.batch_size_per_gpu = best
    models = []

    def run_ours():
        models.append(V.fresh(ours))
        return models[-1].generate_until(requests)

    rows, out = V.compare_speed("generate_until", run_ours, lambda: lm.generate_until(instances, disable_tqdm=True),
                                ours, lm, args.repeats, len(requests), n_context)
    mine, theirs = out["ours"], out["lm-eval"]
    lengths = [r.n_tokens for r in mine]
    summary = {"lm_eval_best_batch_size": best, "lm_eval_scan": scan, "context_tokens": n_context,
               "identical_outputs": sum(a.text == b for a, b in zip(mine, theirs)) / len(mine),
               "ours_failed": sum(r.error is not None for r in mine),
               "mean_generated_tokens": sum(lengths) / len(lengths),
               "rows_at_token_limit": sum(n >= r.max_new_tokens for n, r in zip(lengths, requests)) / len(lengths),
               "near_ties": models[-1].near_ties_, "prefix_reuse_active": models[-1].prefix_reuse_,
               "prefix_reuse_disabled_reason": models[-1].reuse_disabled_reason_,
               "generated_tokens_per_s_ours": sum(lengths) / rows[0]["seconds"],
               "generated_tokens_per_s_lm_eval": sum(lengths) / rows[1]["seconds"]}
    return rows, summary


def measure_selection(selection: str, ours, lm, args: argparse.Namespace) -> tuple[list[dict], dict]:
    """Generation (and log-likelihood) comparison on one item selection; rows and summary name the selection."""
    pairs, suite = generation_requests(args.task, args.shots, selection, args.per_cell, args.items, args.max_gen_toks)
    batch = args.batch_size if args.batch_size == "auto" else int(args.batch_size)
    ours.batch_size_ = ours.batch_size_ if batch == "auto" else batch
    ours.settings = dataclasses.replace(ours.settings, batch_size=batch)
    print(f"== {selection}: {suite['items']} items, {suite['exemplar_blocks']} few-shot exemplar blocks")
    gen_rows, gen = generation_run(ours, lm, pairs, args)
    ll_rows, ll = [], {}
    if args.ll_per_cell:
        lm.batch_size_per_gpu = args.ll_batch_size
        ours.settings = dataclasses.replace(ours.settings, batch_size=args.ll_batch_size)
        with tempfile.TemporaryDirectory(prefix="bench-gen-") as tmp:
            os.environ.setdefault("HF_DATASETS_CACHE", str(Path(tmp) / "hf-datasets"))
            instances, info = V.build_requests(args.task, args.shots, args.ll_items, Path(tmp) / "export",
                                               selection, args.ll_per_cell)
            ll_rows, ll = V.loglikelihood_run(ours, lm, instances, args.repeats)
            ll = {**{f"ll_{k}": v for k, v in info.items()}, **ll}
    rows = [{"model": args.model, "selection": selection, **r} for r in gen_rows + ll_rows]
    return rows, {**suite, **gen, **ll}


def main() -> None:
    args = parse_args()
    threads = C.set_threads(args.threads)
    from harness.offline import enforce_offline

    enforce_offline()
    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    folder = C.model_folder(args.model, args.family)
    tools = argparse.Namespace(device=args.device, dtype=args.dtype, batch_size=args.ll_batch_size)
    ours, lm = V.load_tools(folder, tools)
    rows, by_selection = [], {}
    for selection in args.selections:
        part, by_selection[selection] = measure_selection(selection, ours, lm, args)
        rows += part
    summary = {"selections": by_selection, "params_nonembedding": C.nonembedding_params(folder),
               "peak_rss_mb": C.peak_rss_mb()}
    first = by_selection[args.selections[0]]
    C.print_table(f"{args.model} ({folder.name}): {args.shots} shots, max_gen_toks {first['max_gen_toks']}, "
                  f"ours batch {args.batch_size}, lm-eval at the fastest of {args.lm_batch_sizes}, {threads} threads",
                  rows, ["selection", "kind", "tool", "requests_per_s", "position_ratio", "requests", "tokens",
                         "positions_computed", "seconds"])
    C.print_table("generation", [{"selection": k, **v} for k, v in by_selection.items()],
                  ["selection", "items", "exemplar_blocks", "items_equal_run_limit", "lm_eval_best_batch_size",
                   "identical_outputs", "mean_generated_tokens", "rows_at_token_limit", "near_ties", "ours_failed",
                   "prefix_reuse_active"])
    at_limit = ", ".join(f"{k}: {v['rows_at_token_limit']:.0%} of rows, mean {v['mean_generated_tokens']:.1f}"
                         for k, v in by_selection.items())
    notes = ["tokens = context tokens of the generation requests (context + continuation for log-likelihood); "
             "positions_computed counts every forward position, generated ones included",
             "random weights rarely emit the stop string, so most rows run to max_gen_toks "
             f"({at_limit} generated tokens): a trained model that stops early gains more from rows leaving the batch",
             "lm-eval is timed at the fastest of the batch sizes tried, ours at --batch-size",
             "selection spread: items evenly over the whole suite (its mix of k: about half single-skill items, "
             "whose prompts and shared exemplars are short); per-cell: the first --per-cell items of every (k, mode, split) cell, exactly "
             "the items `emergence run --limit N` composes (items_equal_run_limit), whose cells share exemplars"]
    if args.model == "llama135m":
        notes.append("the 135M shape has a 49 152-token vocabulary but the local BPE fewer tokens: generated ids "
                     "past the tokenizer decode to nothing in both tools, so identical_outputs compares shorter "
                     "texts than a real tokenizer would")
    for n in notes:
        print("note:", n)
    config = {**vars(args), "folder": C.portable_path(folder), "threads": threads}
    name = f"generate_vs_lm_eval_{Path(args.model).name}" + (f"_gen{args.max_gen_toks}" if args.max_gen_toks else "")
    name += "_quick" if args.quick else ""
    print("wrote", C.write_result(name, rows, config, notes, summary=summary))


if __name__ == "__main__":
    main()
