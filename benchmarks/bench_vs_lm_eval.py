"""Speed and agreement of our `HFModel` against lm-evaluation-harness's HF backend on identical requests.

A composite suite (few-shot, multiple choice with distractors, k = 1..4) is exported with our
lm-eval export; lm-eval builds its own request `Instance`s from that export, and both tools score
exactly those (context, continuation) strings on the same local checkpoint, in one process, with
the order of the two tools alternating across repeats. A rolling cross-entropy run on the
catalog's held-out text is compared the same way. See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import tempfile
from pathlib import Path

import _common as C

os.environ.setdefault("TQDM_DISABLE", "1")  # quiets bars left at their default (lm-eval forces one per rolling batch)
DEFAULT_TASK = {"builtin": "symbolic_composite.yaml", "neox100m": "natural_composite.yaml"}
TOLERANCE = 1e-4


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="builtin", help="builtin (largest built-in model), neox100m, or a folder")
    p.add_argument("--family", default=None, help="family folder for --model builtin (default: the built-in one)")
    p.add_argument("--tokenizer", default="bpe", choices=("bpe", "char"), help="tokenizer of neox100m")
    p.add_argument("--task", default=None, help="task file (default: symbolic suite; natural for neox100m+bpe)")
    p.add_argument("--selections", default="spread,per-cell", help="item selections, measured one after the other: "
                   "spread (evenly over the suite, its mix of k) and/or per-cell (the first "
                   "--per-cell items of every (k, mode, split) cell, as `emergence run --limit N` composes them)")
    p.add_argument("--per-cell", type=int, default=None,
                   help="items per cell of the per-cell selection (default: 40 builtin, 4 others)")
    p.add_argument("--items", type=int, default=None,
                   help="items of the spread selection (default: as many as the per-cell selection)")
    p.add_argument("--shots", type=int, default=None,
                   help="few-shot exemplars per prompt (default: 1 builtin, 3 others)")
    p.add_argument("--batch-size", type=int, default=16, help="batch size of both tools")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per tool (order alternates)")
    p.add_argument("--ce-pieces", type=int, default=1000, help="pieces of held-out text for the rolling run")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dtype", default="float32", help="float32 (CPU); bfloat16 on a GPU")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: OMP_NUM_THREADS)")
    p.add_argument("--quick", action="store_true", help="tiny sizes for a smoke run")
    args = p.parse_args()
    args.per_cell = args.per_cell or (40 if args.model == "builtin" else 4)
    if args.quick:
        args.per_cell, args.repeats, args.ce_pieces = 1, min(args.repeats, 2), min(args.ce_pieces, 60)
    args.selections = [s.strip() for s in args.selections.split(",") if s.strip()]
    if not args.selections or set(args.selections) - set(C.SELECTIONS):
        p.error(f"--selections: a comma-separated subset of {','.join(C.SELECTIONS)}")
    args.shots = C.default_shots(args.model) if args.shots is None else args.shots
    if args.task is None:
        bpe = args.model == "neox100m" and args.tokenizer == "bpe"
        args.task = DEFAULT_TASK["neox100m" if bpe else "builtin"]
    return args


def build_requests(task_file: str, shots: int, n_items: int | None, export_dir: Path, selection: str = "spread",
                   per_cell: int = 1) -> tuple[list, dict]:
    """Exports the suite, lets lm-eval build its instances from the export, keeps the instances of the items of
    `selection` (`_common.select_items`: `n_items` spread over the suite, or the first `per_cell` of each cell)."""
    from lm_eval.tasks import TaskManager, get_task_dict

    from harness.run.export import export_task
    from harness.run.task_files import load_task
    from skill_catalog.compose import compose_items

    task = load_task(task_file)
    spec = dataclasses.replace(task.composition, ks=(1, 2, 3, 4), n_shots=shots,
                               n_choices=max(4, task.composition.n_choices))
    task = dataclasses.replace(task, composition=spec)
    export_task(task, "lm-eval", export_dir)
    name = task.name.replace("-", "_") + "_mc"
    lm_task = get_task_dict([name], TaskManager(include_path=str(export_dir)))[name]
    lm_task.build_all_requests(rank=0, world_size=1)
    composed = list(compose_items(spec))
    picked = C.select_items(composed, selection, per_cell, n_items)
    chosen = {it.item_id for it in picked}
    instances = [i for i in lm_task.instances if i.doc["item_id"] in chosen]
    items = {it.item_id: it for it in composed}
    # The export must round-trip: lm-eval's context/continuation are exactly our prompt and choice.
    mismatched = sum(inst.args != (items[inst.doc["item_id"]].prompt, items[inst.doc["item_id"]].choices[inst.idx])
                     for inst in instances)
    info = {"task": task.name, "lm_eval_task": name, "items": len({i.doc["item_id"] for i in instances}),
            "requests": len(instances), "export_mismatches": mismatched, "ks": spec.ks, "shots": shots,
            "choices": spec.n_choices, **C.selection_facts(load_task(task_file), spec, selection, per_cell, picked)}
    return instances, info


def load_tools(folder: Path, args: argparse.Namespace):
    """Our HFModel and lm-eval's HFLM, each loading the same folder offline in the same dtype."""
    from lm_eval.models.huggingface import HFLM

    from harness.model.hf_model import HFModel, ModelSettings

    settings = ModelSettings(device=args.device, dtype=args.dtype, batch_size=args.batch_size)
    ours = HFModel.from_checkpoint(C.checkpoint_at(folder), settings)
    # dtype must be explicit: lm-eval's default "auto" keeps the saved dtype (float16 for the shipped family).
    lm = HFLM(pretrained=str(folder), device=args.device, dtype=args.dtype, batch_size=args.batch_size,
              trust_remote_code=False)
    return ours, lm


def fresh(ours):
    """A new HFModel over the same weights, as the runner makes once per checkpoint: every repeat tokenizes
    from scratch like lm-eval, and pays our one-time check that prefix reuse leaves log-probs unchanged."""
    from harness.model.hf_model import HFModel

    return HFModel(ours.model, ours.tokenizer, ours.settings, ours.name)


def compare_speed(kind: str, run_ours, run_lm, ours, lm, repeats: int, n_requests: int, n_tokens: int) -> tuple:
    """Times both tools `repeats` times, alternating which goes first; returns (rows, last results)."""
    times = {"ours": [], "lm-eval": []}
    positions = {}
    out = {}
    for r in range(repeats):
        order = [("ours", run_ours, ours.model), ("lm-eval", run_lm, lm.model)]
        for tool, fn, model in (order if r % 2 == 0 else order[::-1]):
            with C.count_positions(model) as counts:
                out[tool], seconds = C.timed(fn)
            times[tool].append(seconds)
            positions[tool] = counts["positions"]
    rows = []
    for tool, ts in times.items():
        s = C.median(ts)
        rows.append({"kind": kind, "tool": tool, "requests": n_requests, "tokens": n_tokens,
                     "positions_computed": positions[tool], "seconds": s, "seconds_all": ts,
                     "requests_per_s": n_requests / s, "tokens_per_s": n_tokens / s})
    # the speed-up that running fewer positions alone explains (equal cost per position): the bound of prefix
    # reuse and packing where the arithmetic of the linear layers dominates, as on a CPU in float32
    rows.append({"kind": kind, "tool": "ours/lm-eval", "requests": n_requests, "tokens": n_tokens,
                 "position_ratio": positions["lm-eval"] / positions["ours"] if positions["ours"] else float("nan"),
                 "seconds": rows[0]["seconds"] / rows[1]["seconds"],
                 "requests_per_s": rows[0]["requests_per_s"] / rows[1]["requests_per_s"],
                 "tokens_per_s": rows[0]["tokens_per_s"] / rows[1]["tokens_per_s"]})
    return rows, out


def loglikelihood_run(ours, lm, instances, repeats: int) -> tuple[list[dict], dict]:
    """Times both tools on the instances' requests; agreement of encodings, log-probs and greedy flags."""
    from harness.model.protocol import LoglikelihoodRequest, encode_pair

    requests = [LoglikelihoodRequest(*i.args) for i in instances]
    pairs = [encode_pair(ours._encode, r.context, r.continuation, ours.prefix_token_) for r in requests]
    n_tokens = sum(len(p.context) + len(p.continuation) for p in pairs)
    lm_pairs = [lm._encode_pair(r.context, r.continuation) for r in requests]
    enc_mismatch = sum((p.context, p.continuation) != (list(a), list(b)) for p, (a, b) in zip(pairs, lm_pairs))
    warm = min(8, len(requests))
    fresh(ours).loglikelihood(requests[:warm])
    lm.loglikelihood(instances[:warm], disable_tqdm=True)
    timed_models = []

    def run_ours():
        timed_models.append(fresh(ours))
        return timed_models[-1].loglikelihood(requests)

    rows, out = compare_speed("loglikelihood", run_ours, lambda: lm.loglikelihood(instances, disable_tqdm=True),
                              ours, lm, repeats, len(requests), n_tokens)
    last = timed_models[-1]  # whether the shortcuts held on the timed runs (each checks them once)
    diffs = [abs(a.logprob - b[0]) for a, b in zip(out["ours"], out["lm-eval"]) if math.isfinite(a.logprob)]
    agreement = {"loglikelihood_max_abs_diff": max(diffs) if diffs else math.nan,
                 "loglikelihood_compared": len(diffs), "ours_failed": sum(a.error is not None for a in out["ours"]),
                 "greedy_disagreements": sum(a.is_greedy != b[1] for a, b in zip(out["ours"], out["lm-eval"])),
                 "encoding_mismatches": enc_mismatch,
                 "worst_request_tokens": _worst(out, pairs, diffs),
                 "prefix_reuse_active": last.prefix_reuse_, "prefix_reuse_disabled_reason": last.reuse_disabled_reason_,
                 "tree_packing_active": last.packing_, "tree_packing_disabled_reason": last.packing_disabled_reason_}
    return rows, agreement


def _worst(out: dict, pairs: list, diffs: list) -> int | None:
    finite = [i for i, a in enumerate(out["ours"]) if math.isfinite(a.logprob)]
    if not diffs:
        return None
    i = finite[max(range(len(diffs)), key=diffs.__getitem__)]
    return len(pairs[i].context) + len(pairs[i].continuation)


def rolling_run(ours, lm, pieces: int, repeats: int) -> tuple[list[dict], dict]:
    """Rolling log-likelihood of the catalog's held-out documents (the runner's cross-entropy text)."""
    from lm_eval.api.instance import Instance

    from harness.run.cross_entropy import catalog_text
    from harness.run.task_files import CrossEntropyTask

    docs, _ = catalog_text(CrossEntropyTask("heldout", 1, "catalog", "symbolic", 99_991, pieces))
    docs = [docs] if isinstance(docs, str) else list(docs)
    inst = [Instance("loglikelihood_rolling", {}, (d,), i) for i, d in enumerate(docs)]
    n_tokens = sum(len(ours._encode(d)) for d in docs)
    rows, out = compare_speed("rolling", lambda: fresh(ours).loglikelihood_rolling(docs),
                              lambda: lm.loglikelihood_rolling(inst, disable_tqdm=True), ours, lm, repeats,
                              len(docs), n_tokens)
    diffs = [abs(a.logprob - b) for a, b in zip(out["ours"], out["lm-eval"])]
    total_ours, total_lm = sum(a.logprob for a in out["ours"]), sum(out["lm-eval"])
    summary = {"rolling_docs": len(docs), "rolling_tokens": n_tokens, "rolling_ours_nats": -total_ours,
               "rolling_lm_eval_nats": -total_lm, "rolling_abs_diff": max(diffs),
               "rolling_total_abs_diff": abs(total_ours - total_lm)}
    if max(diffs) > TOLERANCE:  # isolate summation from per-token differences on the worst document
        worst = max(range(len(docs)), key=diffs.__getitem__)
        summary["rolling_worst_doc_abs_diff_lm_eval_vs_ours_summed_in_float32"] = abs(
            float32_window_sums(ours, docs[worst]) - out["lm-eval"][worst])
    return rows, summary


def float32_window_sums(ours, text: str) -> float:
    """Our per-token log-probs of `text`, summed per window in float32 as lm-eval does (we sum in float64).

    lm-eval returns ``float(logprobs.sum())`` of a float32 tensor per window; over thousands of tokens
    that rounding alone reaches 1e-4 nats, so this isolates summation from any per-token difference.
    """
    import torch

    from harness.model.protocol import rolling_windows

    total = 0.0
    with torch.inference_mode():
        for w in rolling_windows(ours._encode(text), ours.prefix_token_, ours.max_length_):
            row = torch.tensor([w.context + w.targets[:-1]], device=ours.device_)
            logp = torch.log_softmax(ours.model(input_ids=row).logits.float()[0], -1)[len(w.context) - 1:]
            total += float(logp.gather(-1, torch.tensor(w.targets, device=ours.device_)[:, None]).sum())
    return total


def edge_cases(ours, lm, instances) -> list[dict]:
    """Request shapes where the two tools' documented semantics could part: scored once by both."""
    from lm_eval.api.instance import Instance

    from harness.model.protocol import LoglikelihoodRequest

    prompt, choice = instances[0].args
    prefix_text = ours.tokenizer.decode([ours.prefix_token_])
    long_ctx = prompt * (ours.max_length_ // max(1, len(ours._encode(prompt))) + 2)
    cases = {"trailing space on context": (prompt + " ", choice.lstrip(" ")),
             "trailing newline on context": (prompt + "\n", choice),
             "empty context": ("", choice),
             "empty context, continuation starts with the prefix token": ("", prefix_text + choice),
             "context longer than max_length": (long_ctx, choice)}
    reqs = [LoglikelihoodRequest(*c) for c in cases.values()]
    mine = fresh(ours).loglikelihood(reqs)
    theirs = lm.loglikelihood([Instance("loglikelihood", {}, c, 0) for c in cases.values()], disable_tqdm=True)
    rows = []
    for name, a, (b, _) in zip(cases, mine, theirs):
        diff = abs(a.logprob - b) if math.isfinite(a.logprob) else math.nan
        rows.append({"case": name, "ours": a.logprob, "lm_eval": b, "abs_diff": diff,
                     "ours_tokens": a.n_tokens, "ours_error": a.error,
                     "same": bool(diff <= TOLERANCE) if math.isfinite(diff) else False})
    return rows


def main() -> None:
    args = parse_args()
    threads = C.set_threads(args.threads)
    from harness.offline import enforce_offline

    enforce_offline()
    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    folder = C.model_folder(args.model, args.family, args.tokenizer)
    rows, by_selection = [], {}
    with tempfile.TemporaryDirectory(prefix="bench-lm-eval-") as tmp:
        os.environ.setdefault("HF_DATASETS_CACHE", str(Path(tmp) / "hf-datasets"))
        ours, lm = load_tools(folder, args)
        for selection in args.selections:
            instances, suite = build_requests(args.task, args.shots, args.items, Path(tmp) / selection, selection,
                                              args.per_cell)
            print(f"== {selection}: {suite['requests']} requests of {suite['items']} items, "
                  f"{suite['exemplar_blocks']} few-shot exemplar blocks")
            ll_rows, agreement = loglikelihood_run(ours, lm, instances, args.repeats)
            rows += [{"model": args.model, "selection": selection, **r} for r in ll_rows]
            by_selection[selection] = {**suite, **agreement}
        ce_rows, rolling = rolling_run(ours, lm, args.ce_pieces, args.repeats)
        edges = edge_cases(ours, lm, instances)
    rows += [{"model": args.model, "selection": None, **r} for r in ce_rows]
    summary = {"selections": by_selection, **rolling,
               "max_length_ours": ours.max_length_, "max_length_lm_eval": lm.max_length,
               "params_nonembedding": C.nonembedding_params(folder)}
    C.print_table(f"{args.model} ({folder.name}): {args.shots} shots, batch {args.batch_size}, {threads} threads",
                  rows, ["selection", "kind", "tool", "requests", "tokens", "positions_computed", "seconds",
                         "requests_per_s", "tokens_per_s"])
    C.print_table("agreement", [{"selection": k, **v} for k, v in by_selection.items()],
                  ["selection", "items", "requests", "exemplar_blocks", "items_equal_run_limit",
                   "loglikelihood_compared", "loglikelihood_max_abs_diff", "ours_failed", "greedy_disagreements",
                   "encoding_mismatches", "export_mismatches"])
    C.print_table("rolling", [summary], ["rolling_docs", "rolling_tokens", "rolling_abs_diff", "rolling_total_abs_diff"])
    C.print_table("semantics on edge cases (scored once)", edges, ["case", "ours", "lm_eval", "abs_diff", "ours_error"])
    notes = _notes(summary, edges)
    for n in notes:
        print("note:", n)
    config = {**vars(args), "folder": C.portable_path(folder), "threads": threads}
    name = "vs_lm_eval" + ("" if args.model == "builtin" else f"_{Path(args.model).name}")
    name += "_quick" if args.quick else ""
    print("wrote", C.write_result(name, rows, config, notes, summary=summary, edge_cases=edges))


def _notes(summary: dict, edges: list[dict]) -> list[str]:
    notes = ["tokens = context + continuation tokens of every request (the work a plain scorer does); "
             "positions_computed = input positions each tool actually ran forward (padding included, "
             "prefixes served from our key/value cache excluded)",
             "lm-eval HFLM is given dtype explicitly: its default 'auto' keeps the checkpoint's saved dtype "
             "(float16 for the shipped family) while our runner upcasts to float32"]
    notes.append("selection spread: items evenly over the whole suite (its mix of k: about half single-skill "
                 "items, whose prompts and shared exemplars are short); per-cell: the first --per-cell items of every (k, mode, split) cell, "
                 "the items `emergence run --limit N` composes when the suite's spec is the task's own "
                 "(items_equal_run_limit)")
    for selection, part in summary["selections"].items():
        if part["loglikelihood_max_abs_diff"] > TOLERANCE:
            notes.append(f"{selection}: max |delta logprob| {part['loglikelihood_max_abs_diff']:.2e} exceeds "
                         f"{TOLERANCE}: investigate")
    if summary["rolling_abs_diff"] > TOLERANCE:
        f32 = summary["rolling_worst_doc_abs_diff_lm_eval_vs_ours_summed_in_float32"]
        why = ("lm-eval sums each window's token log-probs in float32 (we sum in float64); our per-token values "
               f"summed its way differ from lm-eval's by {f32:.1e}") if f32 <= TOLERANCE else "unexplained"
        notes.append(f"rolling |delta| {summary['rolling_abs_diff']:.2e} nats on one document exceeds {TOLERANCE}: "
                     f"{why}")
    for e in edges:
        if not e["same"]:
            notes.append(f"edge case differs: {e['case']}: ours {e['ours']} ({e['ours_error'] or 'ok'}), "
                         f"lm-eval {e['lm_eval']}")
    return notes


if __name__ == "__main__":
    main()
