"""Subcommands over a finished run: `analyze` (tables + summary), `report` (HTML) and `compare` (two checkpoints).

RUN is a run directory written by `emergence run`; checkpoints are named by label or id prefix.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from harness.report.fmt import interval, is_missing, num
from skill_catalog.errors import UserError


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def summary_text(run_dir: Path, run: dict | None = None) -> str:
    """Per checkpoint: params, loss, excess loss and competence per k; then the collapse verdicts (`run`: the
    run's tables when already read)."""
    from harness.analysis.io import read_analysis
    from harness.records import SINGLE_MODE
    from harness.report.data import checkpoints_for_report
    from harness.storage.run_files import load_run

    summary, tables = read_analysis(run_dir)
    run = run if run is not None else load_run(run_dir)
    checkpoints = checkpoints_for_report(run["checkpoints"], tables["excess_loss"])
    metric = summary.get("metric", "exact_match")
    comp = tables["competence"]
    comp = comp[comp["metric"] == metric]
    modes = sorted(set(comp["mode"].astype(str)) - {SINGLE_MODE})
    ks = sorted({int(k) for k in comp["k"].dropna()})
    value = {(str(r["checkpoint_id"]), str(r["mode"]), int(r["k"])): r["competence"] for r in comp.to_dict("records")}
    rows = []
    for ck in checkpoints.to_dict("records"):
        cells = []
        for k in ks:
            shown = [SINGLE_MODE] if k == 1 else modes
            cells.append("/".join(num(value.get((ck["checkpoint_id"], m, k))) for m in shown))
        rows.append([ck["label"], num(ck["params"]), num(ck["loss"]), num(ck["excess_loss"]), *cells])
    headers = ["checkpoint", "params", "CE (nats/token)", "excess loss", *[f"k={k}" for k in ks]]
    lines = [f"{metric} competence (chance-corrected); k>1 columns: {' / '.join(modes) or '-'}",
             format_table(headers, rows)]
    for test in (summary.get("analyses", {}).get("collapse", {}).get("tests") or []):
        lines.append(f"collapse ({test.get('mode')}): {test.get('verdict') or 'not run'} "
                     f"(shared-curve p = {num(test.get('p_shared_curve'))}, exponent c = {num(test.get('c_shared'))} "
                     f"[{num(test.get('c_shared_lo'))}, {num(test.get('c_shared_hi'))}] (1: A&G), p(a<=1, one-sided) = "
                     f"{num(test.get('p_a_eq_1'))}; pooled-fit p(a=b) = {num(test.get('p_a_eq_b'))}, descriptive)")
    collapse = summary.get("analyses", {}).get("collapse", {})
    if not collapse.get("tests"):
        lines.append(f"collapse: not run ({collapse.get('reason') or 'no composite items'})")
    return "\n".join(lines)


def _check_n_boot(n_boot: int) -> None:
    if n_boot < 1:
        raise UserError(f"--n-boot must be at least 1, got {n_boot}")


def cmd_analyze(args: argparse.Namespace) -> int:
    """Writes analysis.json and analysis/*.parquet, then prints a compact summary."""
    from harness.analysis.io import write_analysis
    from harness.storage.run_files import load_run

    _check_n_boot(args.n_boot)
    trained = tuple(args.trained_k) if args.trained_k else None
    run = load_run(Path(args.run))  # read once, for the analysis and its summary
    path = write_analysis(Path(args.run), seed=args.seed, n_boot=args.n_boot, trained_ks=trained, tables=run)
    print(summary_text(Path(args.run), run))
    print(f"analysis: {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Writes the HTML report (analysing first when needed) and prints its path."""
    from harness.report.build import write_report

    print(write_report(Path(args.run)))
    return 0


def resolve_checkpoint(checkpoints: pd.DataFrame, name: str) -> str:
    """The checkpoint id named by an exact label or a unique id prefix.

    Raises:
        UserError: naming the known labels when `name` matches none, or the candidates when it is ambiguous.
    """
    ids, labels = checkpoints["checkpoint_id"].astype(str), checkpoints["label"].astype(str)
    exact = ids[labels == name]
    if len(exact) == 1:
        return str(exact.iloc[0])
    prefix = ids[ids.str.startswith(name)] if name else ids.iloc[:0]
    if len(prefix) == 1:
        return str(prefix.iloc[0])
    if len(prefix) > 1 or len(exact) > 1:
        raise UserError(f"checkpoint {name!r} is ambiguous: it matches {', '.join(sorted(set(prefix) | set(exact)))}; "
                        "give a longer id prefix")
    raise UserError(f"unknown checkpoint {name!r}; labels in this run: {', '.join(labels)}")


def cmd_compare(args: argparse.Namespace) -> int:
    """Paired comparison of two checkpoints on the same items (clustered test, adjusted across cells)."""
    from harness.analysis import paired_comparison
    from harness.report.data import checkpoints_for_report
    from harness.storage.run_files import load_run

    _check_n_boot(args.n_boot)
    run = load_run(Path(args.run))
    checkpoints = checkpoints_for_report(run["checkpoints"])
    a, b = resolve_checkpoint(checkpoints, args.a), resolve_checkpoint(checkpoints, args.b)
    if a == b:
        raise UserError(f"{args.a!r} and {args.b!r} name the same checkpoint; compare two different ones")
    metrics = sorted(run["records"]["metric"].astype(str).unique()) if "metric" in run["records"] else []
    if args.metric not in metrics:
        raise UserError(f"no records of metric {args.metric!r}; this run has: {', '.join(metrics) or 'none'}")
    table = paired_comparison(run["records"], a, b, metric=args.metric, n_boot=args.n_boot, seed=args.seed,
                              adjust=args.adjust)
    label = dict(zip(checkpoints["checkpoint_id"], checkpoints["label"]))
    print(f"A = {label[a]} ({a[:12]}), B = {label[b]} ({b[:12]}), metric {args.metric}")
    rows = [[f"{r['mode']}", num(r["k"]), num(r["n_pairs"]), num(r["n_clusters"]), num(r["only_a"]),
             num(r["only_b"]), num(r["p_value"]), num(r["p_adjusted"]),
             interval(r["diff"], r["diff_lo"], r["diff_hi"]),
             "" if is_missing(r["reason"]) else str(r["reason"])] for r in table.to_dict("records")]
    print(format_table(["mode", "k", "pairs", "clusters", "only A", "only B", "clustered p", f"{args.adjust} p",
                        "mean(A)-mean(B) [95% CI]", "note"], rows))
    print(f"clustered p: sign-flip test over skill-tuple clusters (McNemar when each cluster has one item); "
          f"{args.adjust} p: adjusted across the {len(table)} cells of this comparison")
    return 0


def add_commands(sub) -> None:
    """Registers `analyze`, `report` and `compare` on the main parser's subcommands."""
    p = sub.add_parser("analyze", help="analyse a run: write analysis.json and analysis/*.parquet")
    p.add_argument("run", help="run directory (results/<run_id>)")
    p.add_argument("--seed", type=int, default=0, help="seed of every bootstrap")
    p.add_argument("--n-boot", type=int, default=200, help="bootstrap replicates per interval")
    p.add_argument("--trained-k", type=int, nargs="+", default=None,
                   help="k the family was trained on (default: read from the family manifest; else every k); "
                        "the collapse test, Cor. 13, largest k and product-rule median use only these")
    p.set_defaults(handler=cmd_analyze)
    p = sub.add_parser("report", help="write the self-contained HTML report of a run")
    p.add_argument("run", help="run directory (results/<run_id>)")
    p.set_defaults(handler=cmd_report)
    p = sub.add_parser("compare", help="paired comparison of two checkpoints (clustered test, paired bootstrap)")
    p.add_argument("run", help="run directory (results/<run_id>)")
    p.add_argument("a", help="checkpoint A: label or id prefix")
    p.add_argument("b", help="checkpoint B: label or id prefix")
    p.add_argument("--metric", default="exact_match", help="metric to compare (default exact_match)")
    p.add_argument("--seed", type=int, default=0, help="seed of the paired bootstrap")
    p.add_argument("--n-boot", type=int, default=200, help="bootstrap replicates")
    p.add_argument("--adjust", choices=("holm", "bh", "by", "none"), default="holm",
                   help="multiplicity adjustment across cells: holm (family-wise, default), bh/by (false discovery)")
    p.set_defaults(handler=cmd_compare)
