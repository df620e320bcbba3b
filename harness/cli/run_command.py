"""Subcommands that produce runs: `run` (the main job without arguments) and `merge`.

The flags of `emergence run` are generated from `RunConfig`'s fields, so the configuration, the
CLI and the manifest can never disagree.
"""
from __future__ import annotations

import argparse
import ast
import inspect
import json
import shutil
import sys
import typing
from dataclasses import MISSING, fields
from functools import lru_cache
from pathlib import Path

from harness.run.config import RunConfig
from skill_catalog.errors import UserError


@lru_cache(maxsize=1)
def field_docs() -> dict[str, str]:
    """The docstring under each `RunConfig` field (used as the flag's help)."""
    tree = ast.parse(inspect.getsource(RunConfig))
    body, docs = tree.body[0].body, {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = str(nxt.value.value)
    return docs


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per `RunConfig` field, typed from its annotation."""
    hints = typing.get_type_hints(RunConfig)
    for f in fields(RunConfig):
        flag, hint, default = "--" + f.name.replace("_", "-"), hints[f.name], f.default
        help_text = field_docs().get(f.name, "")
        if hint is bool and default:  # on unless switched off: --analyze (the default) and --no-analyze
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=True, help=help_text)
        elif hint is bool:
            parser.add_argument(flag, action="store_true", help=help_text)
        elif typing.get_origin(hint) is tuple:
            parser.add_argument(flag, nargs="+", default=None, help=help_text)
        elif int in typing.get_args(hint) or hint is int:
            parser.add_argument(flag, type=int, default=None if default is MISSING else default, help=help_text)
        else:
            parser.add_argument(flag, default=default, help=help_text)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The `RunConfig` of parsed flags (tuple fields left unset keep their defaults)."""
    values = {}
    for f in fields(RunConfig):
        value = getattr(args, f.name)
        if isinstance(value, list):
            value = tuple(value)
        if value is not None or f.default is None:
            values[f.name] = value
    return RunConfig(**values)


def cmd_run(args: argparse.Namespace) -> int:
    """Scores a family on task suites; with no arguments, the whole main job on the built-in family."""
    from harness.run.runner import run
    from harness.storage.run_files import load_run
    from harness.run.manifest import summary_table

    from harness.parallel import world

    config = config_from_args(args)
    run_dir, failures = run(config)
    w = world()
    if not w.is_main:  # a data-parallel helper process: rank 0 writes, analyzes and reports
        print(f"data-parallel process rank {w.rank} of {w.size} done")
        return 0
    tables = load_run(run_dir)
    print(summary_table(tables))
    if config.analyze:
        _analyze_and_report(run_dir, tables)
    print(f"run directory: {run_dir}")
    for line in failures:
        print(f"error: {line}", file=sys.stderr)
    return 1 if failures else 0


def _analyze_and_report(run_dir: Path, tables: dict) -> None:
    """Analyses the run and writes its report, from the run's tables read once."""
    from harness.analysis.io import write_analysis
    from harness.report.build import write_report

    write_analysis(run_dir, tables=tables)
    print(f"report: {write_report(run_dir, tables)}")


def cmd_merge(args: argparse.Namespace) -> int:
    """Combines run directories (e.g. shards of a cluster job) into one."""
    from harness.storage.run_files import combine, read_parts

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} is not empty; merge into a new folder")
    (out / "parts").mkdir(parents=True)
    sources = []
    for src in map(Path, args.runs):
        if not (src / "manifest.json").exists():
            raise UserError(f"{src} is not a run directory (no manifest.json); pass folders written by `emergence run`")
        sources.append(json.loads((src / "manifest.json").read_text()))
        for part in read_parts(src, "records") + read_parts(src, "checkpoint") + read_parts(src, "failure"):
            if not (out / "parts" / part.name).exists():
                shutil.copy2(part, out / "parts" / part.name)
    tables = combine(out)
    (out / "manifest.json").write_text(json.dumps({"run_id": out.name, "merged_from": sources,
                                                   "n_records": int(len(tables["records"]))}, indent=2))
    print(f"merged {len(args.runs)} runs into {out}: {len(tables['checkpoints'])} checkpoints, {len(tables['records'])} records")
    return 0


def add_commands(sub) -> None:
    """Registers the run-level subcommands on the main parser."""
    p = sub.add_parser("run", help="score a checkpoint family (no arguments: the main job on the built-in family)")
    add_config_flags(p)
    p.set_defaults(handler=cmd_run)
    p = sub.add_parser("merge", help="combine run directories into one")
    p.add_argument("out", help="new folder for the merged run")
    p.add_argument("runs", nargs="+", help="run directories to merge")
    p.set_defaults(handler=cmd_merge)
