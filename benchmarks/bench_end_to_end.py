"""End to end on a pretrained-size model: the natural suite on a 135M-shape Llama, every metric, timed per phase.

One child process per thread count runs `harness.run.runner.run` on the natural suite at ``--limit`` items per
cell (exact match and partial credit by greedy generation, multiple choice, gold log-prob, and the cross-entropy
of the suite's default corpus; ``--ce-tokens`` adds local text), then the analysis and report, with a fresh cache and output folder. The
model's methods are wrapped with timers, so the split is load / cross-entropy / likelihood / generation /
analysis; the child's peak resident memory is its own. See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as C

PHASES = ("load", "cross_entropy", "likelihood", "generation", "analysis")
TEXT_FILES = ("README.md", "benchmarks/README.md", "tasks/README.md", "skill_catalog/README.md")
"""The repository's own prose, concatenated (and repeated if short) into the cross-entropy text."""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="llama135m", help="llama135m (random 135M-shape Llama) or a checkpoint folder")
    p.add_argument("--limit", type=int, default=55, help="items per (k, mode, split) cell")
    p.add_argument("--ce-tokens", type=int, default=0, help="tokens of an extra cross-entropy text of the repository's "
                   "prose (about; 0: none, the suite's own default corpus gives the cross-entropy)")
    p.add_argument("--threads", default="2,1", help="thread counts, one child run each")
    p.add_argument("--batch-size", default="auto", help="runner batch size")
    p.add_argument("--quick", action="store_true", help="--limit 2, one thread")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.limit, args.threads = 2, "1"
    return args


def ce_text(folder: Path, tokenizer_dir: Path, n_tokens: int) -> Path:
    """A .txt of about `n_tokens` tokens of the repository's own prose (with this model's tokenizer)."""
    from transformers import AutoTokenizer

    root = Path(__file__).resolve().parent.parent
    prose = "\n\n".join((root / f).read_text(encoding="utf-8") for f in TEXT_FILES if (root / f).exists())
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    per_char = len(tok(prose[:20_000], add_special_tokens=False)["input_ids"]) / len(prose[:20_000])
    n_chars = int(n_tokens / per_char)
    text = (prose * (n_chars // len(prose) + 1))[:n_chars]
    path = folder / "ce-text.txt"
    path.write_text(text, encoding="utf-8")
    return path


def ce_task(folder: Path, text: Path) -> Path:
    path = folder / "repo_text.yaml"
    path.write_text("name: repo-text\nversion: 1\nkind: cross_entropy\ndescription: The repository's own prose.\n"
                    f"source: {text}\nskill_set: natural\nseed: 0\npieces: 1\n")
    return path


def child(spec: dict) -> dict:
    """Runs the suite once in this process; returns seconds per phase, peak memory and run facts."""
    import torch

    torch.set_num_threads(spec["threads"])
    from harness.model.hf_model import HFModel
    from harness.report.build import write_analysis, write_report
    from harness.run.config import RunConfig
    from harness.run.runner import run
    from harness.storage.run_files import load_run

    seconds, grew = dict.fromkeys(PHASES, 0.0), dict.fromkeys(PHASES, 0.0)
    positions, steps, current = dict.fromkeys(PHASES, 0), [0], ["load"]
    models = []

    def count(module, args, kwargs) -> None:  # input positions run forward, per phase; generation's decode steps
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None:
            positions[current[0]] += int(ids.numel())
            steps[0] += current[0] == "generation" and ids.shape[1] == 1

    def loaded(cls, *a, **k):
        models.append(timed("load", load)(cls, *a, **k))
        models[-1].model.register_forward_pre_hook(count, with_kwargs=True)
        return models[-1]

    def timed(phase: str, fn):
        def wrapper(*args, **kwargs):
            start, peak = time.perf_counter(), C.peak_rss_mb()
            current[0] = phase
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[phase] += time.perf_counter() - start
                grew[phase] += C.peak_rss_mb() - peak  # the phase that raised the peak, and by how much
        return wrapper

    load = HFModel.from_checkpoint.__func__
    HFModel.from_checkpoint = classmethod(loaded)
    HFModel.loglikelihood_rolling = timed("cross_entropy", HFModel.loglikelihood_rolling)
    HFModel.loglikelihood = timed("likelihood", HFModel.loglikelihood)
    HFModel.generate_until = timed("generation", HFModel.generate_until)
    tasks = (spec["task"], spec["ce_task"]) if spec["ce_task"] else (spec["task"],)
    config = RunConfig(family=(spec["folder"],), tasks=tasks, out=spec["out"],
                       batch_size=spec["batch_size"], limit=spec["limit"], device="cpu", cache_dir=spec["cache"])
    started = time.perf_counter()
    run_dir, failures = run(config)
    scored = time.perf_counter()
    write_analysis(run_dir)
    report = write_report(run_dir)
    seconds["analysis"] = time.perf_counter() - scored
    total = time.perf_counter() - started
    tables = load_run(run_dir)
    records = tables["records"]
    checkpoint = tables["checkpoints"].iloc[0].to_dict()
    hf = models[-1]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"threads": spec["threads"], "seconds_total": total, "cpu_seconds": usage.ru_utime + usage.ru_stime,
            **{f"seconds_{p}": s for p, s in seconds.items()},
            "seconds_other": total - sum(seconds.values()), "peak_rss_mb": C.peak_rss_mb(),
            **{f"peak_rss_raised_mb_{p}": g for p, g in grew.items()},
            **{f"positions_{p}": n for p, n in positions.items() if p not in ("load", "analysis")},
            "decode_steps": steps[0], "params": sum(p.numel() for p in models[-1].model.parameters()),
            "items": int(records["item_id"].nunique()), "records": len(records),
            "metrics": sorted(records["metric"].unique()), "failures": failures,
            "ce_tokens": checkpoint.get("ce_tokens"), "ce_nats_per_token": checkpoint.get("ce_nats_sum", float("nan"))
            / max(1, checkpoint.get("ce_tokens") or 1),
            "generation_near_ties": hf.near_ties_, "prefix_reuse_off": hf.reuse_disabled_reason_,
            "tree_packing_off": hf.packing_disabled_reason_, "load_average_1m_end": os.getloadavg()[0],
            "report_reasons": _reasons(report)}


def _reasons(report: Path) -> dict[str, int]:
    """The report's "why not" statements (one checkpoint cannot show emergence) and how often each appears."""
    import html
    import re

    text = html.unescape(re.sub(r"<[^>]+>", "\n", report.read_text(encoding="utf-8")))
    found: dict[str, int] = {}
    for line in text.splitlines():
        line = line.strip()
        if re.search(r"fewer than|at chance|not enough data|cannot|below chance", line) and len(line) < 300:
            found[line] = found.get(line, 0) + 1
    return found


def main() -> None:
    args = parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(child(spec)))
        return
    folder = C.model_folder(args.model, None)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        task = ce_task(Path(tmp), ce_text(Path(tmp), folder, args.ce_tokens)) if args.ce_tokens else None
        for threads in [int(t) for t in args.threads.split(",")]:
            spec = {"threads": threads, "folder": str(folder), "task": "natural_composite.yaml",
                    "ce_task": str(task) if task else None,
                    "out": str(Path(tmp) / f"out-{threads}"), "cache": str(Path(tmp) / f"cache-{threads}"),
                    "batch_size": args.batch_size, "limit": args.limit}
            env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                   "TQDM_DISABLE": "1"}
            load_start = os.getloadavg()[0]
            out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=env,
                                 capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"child run with {threads} threads failed:\n{out.stderr[-4000:]}")
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append({"model": args.model, "limit": args.limit, "load_average_1m_start": load_start, **row})
            print(f"{threads} threads: {row['seconds_total']:.0f} s, peak {row['peak_rss_mb']:.0f} MiB")
    C.print_table(f"natural suite, --limit {args.limit}, {args.model} ({folder.name})", rows,
                  ["threads", "items", "records", "seconds_total", "cpu_seconds", *[f"seconds_{p}" for p in PHASES], "seconds_other",
                   "peak_rss_mb", "load_average_1m_start"])
    notes = ["the machine is shared: load_average_1m_start/_end give the other load during each run; times on an "
             "idle machine are lower; cpu_seconds (user + system time of the run) is what the run itself used",
             "peak_rss_raised_mb_<phase>: how much each phase raised the process's peak resident memory",
             "seconds_other: planning, item composition, writing tables (everything outside the timed phases)",
             "cross-entropy: the natural suite's own default held-out English corpus (tasks/english_heldout_text.yaml)"
             + (f", plus the repository's own prose ({', '.join(TEXT_FILES)}), about {args.ce_tokens} tokens"
                if args.ce_tokens else ""),
             "random weights: generation runs every row to the task's 64-token limit (no stop string appears)"]
    for n in notes:
        print("note:", n)
    config = {**vars(args), "folder": C.portable_path(folder)}
    print("wrote", C.write_result("end_to_end" + ("_quick" if args.quick else ""), rows, config, notes))


if __name__ == "__main__":
    main()
