"""Subcommands of staged validation and monitoring: `gate` (may a candidate ship?) and `history add/show`.

Exit codes of `gate`: 0 every stage passed, 1 a check failed or could not be decided, 2 bad input.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from skill_catalog.errors import UserError


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "x"


def _resolve(args: argparse.Namespace, policy) -> tuple[Path, str, str]:
    """The run directory and the two checkpoint ids: labels in --run, or folders scored now."""
    if args.run:
        from harness.cli.analysis_commands import resolve_checkpoint
        from harness.report.data import checkpoints_for_report
        from harness.storage.run_files import load_run

        checkpoints = checkpoints_for_report(load_run(Path(args.run))["checkpoints"])
        b, c = resolve_checkpoint(checkpoints, args.baseline), resolve_checkpoint(checkpoints, args.candidate)
        if b == c:
            raise UserError(f"{args.baseline!r} and {args.candidate!r} name the same checkpoint")
        return Path(args.run), b, c
    for name in (args.baseline, args.candidate):
        if not Path(name).expanduser().exists():
            raise UserError(f"{name}: no such checkpoint folder; pass folders, or labels together with --run RUN")
    from harness.gate.score import score_pair

    return score_pair(args.baseline, args.candidate, policy.tasks, args.out, args.device)


def cmd_gate(args: argparse.Namespace) -> int:
    """Decides stage by stage whether the candidate may replace the baseline; writes Markdown and JUnit XML."""
    from harness.gate.evaluate import evaluate, regressed
    from harness.gate.policy import load_policy
    from harness.gate.render import console, junit, markdown
    from harness.storage.run_files import load_run

    policy = load_policy(args.policy)
    run_dir, b, c = _resolve(args, policy)
    run = load_run(run_dir)
    result = evaluate(policy, run["records"], run["checkpoints"], b, c, all_stages=args.all_stages)
    stem = run_dir / "gate" / f"{_safe(policy.name)}--{_safe(result.baseline)}--{_safe(result.candidate)}"
    stem.parent.mkdir(exist_ok=True)
    stem.with_suffix(".md").write_text(markdown(result))
    stem.with_suffix(".xml").write_text(junit(result))
    print(console(result))
    if names := regressed(result):
        print("regressed: " + "; ".join(names))
    print(f"summary: {stem.with_suffix('.md')}\njunit: {stem.with_suffix('.xml')}")
    return result.exit_code


def cmd_history_add(args: argparse.Namespace) -> int:
    """Appends a run's per-checkpoint competence and cross-entropy to the history store."""
    from harness.gate.history import add_run, history_path

    path = history_path(Path(args.store) if args.store else Path(args.run).parent)
    n = add_run(Path(args.run), path, metric=args.metric)
    print(f"added {n} rows from {args.run} to {path}")
    return 0


def cmd_history_show(args: argparse.Namespace) -> int:
    """Prints the history per checkpoint and flags changes significant after multiplicity control."""
    from harness.gate.history import changes, history_path, read_history, show_text

    path = history_path(Path(args.store))
    history = read_history(path)
    print(show_text(history, changes(history, alpha=args.alpha)))
    return 0


def add_commands(sub) -> None:
    """Registers `gate` and `history` on the main parser's subcommands."""
    p = sub.add_parser("gate", help="decide stage by stage whether a candidate checkpoint may replace a baseline")
    p.add_argument("--policy", required=True, help="policy YAML (stages, floors, margins)")
    p.add_argument("--baseline", required=True, help="checkpoint folder, or a label in --run")
    p.add_argument("--candidate", required=True, help="checkpoint folder, or a label in --run")
    p.add_argument("--run", default=None, help="an existing run directory holding both checkpoints")
    p.add_argument("--out", default="results", help="folder of the run scored when folders are given")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (scoring only)")
    p.add_argument("--all-stages", action="store_true", help="run every stage even when an earlier one did not pass")
    p.set_defaults(handler=cmd_gate)
    hist = sub.add_parser("history", help="monitoring: an append-only history of checkpoints' competence")
    hsub = hist.add_subparsers(dest="history_command", required=True)
    p = hsub.add_parser("add", help="append a run's checkpoints to the history")
    p.add_argument("run", help="run directory (results/<run_id>)")
    p.add_argument("--store", default=None, help="results folder holding history.sqlite (default: the run's parent)")
    p.add_argument("--metric", default="exact_match", help="metric to record (default exact_match)")
    p.set_defaults(handler=cmd_history_add)
    p = hsub.add_parser("show", help="print the history and flag significant changes")
    p.add_argument("--store", default="results", help="results folder holding history.sqlite")
    p.add_argument("--alpha", type=float, default=0.05, help="false-discovery rate of the flagged changes")
    p.set_defaults(handler=cmd_history_show)
