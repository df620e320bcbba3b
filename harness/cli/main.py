"""The `emergence` command: one entry point, one small function per subcommand.

Every user error is printed as one line on stderr with exit code 2 (`main` is the one place that does
this, through `harness.errors.as_user_error`); nothing is half-written.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

from harness.cli.analysis_commands import add_commands as add_analysis_commands
from harness.cli.gate_commands import add_commands as add_gate_commands
from harness.cli.run_command import add_commands
from harness.errors import as_user_error
from harness.offline import enforce_offline
from skill_catalog.errors import UserError

Handler = Callable[[argparse.Namespace], int]


def cmd_catalog(args: argparse.Namespace) -> int:
    """Prints the skills of one or every skill set, grouped by family."""
    from skill_catalog import skill_sets, skills

    for set_name in [args.set] if args.set else skill_sets():
        pool = skills(set_name)
        families = sorted({s.family for s in pool})
        print(f"\n{set_name}: {len(pool)} skills in {len(families)} families")
        print(f"  {'family':<16} {'skill':<20} {'input -> output':<28} instruction")
        for s in sorted(pool, key=lambda s: (s.family, s.name)):
            types = f"{s.input_type} -> {s.output_type}"
            print(f"  {s.family:<16} {s.name:<20} {types:<28} {s.instruction}")
    return 0


def _composite(task_path: str):
    from harness.run.task_files import CompositeTask, load_task

    task = load_task(task_path)
    if not isinstance(task, CompositeTask):
        raise UserError(f"{task_path} is a cross-entropy suite; pass a composite suite (kind: composite)")
    return task


def cmd_items(args: argparse.Namespace) -> int:
    """Renders items of a composite task."""
    from dataclasses import replace

    from skill_catalog.compose import compose_items

    task = _composite(args.task)
    spec = task.composition if args.k is None else replace(task.composition, ks=(args.k,))
    shown = 0
    for item in compose_items(spec):
        if shown >= args.show:
            break
        shown += 1
        print(f"--- {item.item_id}  k={item.k} {item.mode} {item.split}  skills={'+'.join(item.skills)}")
        print(item.prompt + "\u2588" + item.answer)
        print(f"    parts={list(item.part_answers)}  choices={list(item.choices)}  gold={item.gold_index}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Exports a composite task's items."""
    from harness.run.export import export_task

    print(export_task(_composite(args.task), args.format, Path(args.out)))
    return 0


def cmd_tasks_validate(args: argparse.Namespace) -> int:
    """Validates task files, printing every problem of each."""
    from harness.run.task_files import read_yaml, validate

    failed = 0
    for path in args.files:
        try:
            problems = validate(read_yaml(Path(path)))
        except UserError as err:
            problems = [str(err)]
        failed += bool(problems)
        print(f"{path}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
        for p in problems:
            print(f"  - {p}")
    return 2 if failed else 0


def cmd_zoo_build(args: argparse.Namespace) -> int:
    """Trains (or resumes) a reference family."""
    from harness.zoo.family import build_family, default_workers, user_family_dir
    from harness.zoo.presets import get_preset

    preset = get_preset(args.preset)
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers {args.workers}: give 1 or more (sizes trained side by side)")
    workers = args.workers or default_workers(preset)
    out = Path(args.out) if args.out else user_family_dir(preset.name, args.seed)
    print(f"building family {preset.name!r} into {out} ({workers} size(s) side by side, {preset.threads} thread(s) each)")
    print(f"family manifest: {build_family(preset, out, seed=args.seed, workers=workers)}")
    return 0


def cmd_zoo_path(args: argparse.Namespace) -> int:
    """Prints the folder of a built family."""
    from harness.zoo.family import family_path

    print(family_path(args.preset))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="emergence", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("catalog", help="list the skills of the catalog")
    p.add_argument("--set", choices=("symbolic", "symbolic_v2", "natural"), help="one skill set (default: all)")
    p.set_defaults(handler=cmd_catalog)
    p = sub.add_parser("items", help="render items of a composite task")
    p.add_argument("--task", required=True, help="task YAML file (or its name under tasks/)")
    p.add_argument("--k", type=int, help="only this k")
    p.add_argument("--show", type=int, default=5, help="how many items to print")
    p.set_defaults(handler=cmd_items)
    p = sub.add_parser("export", help="export a composite task (jsonl, datasets or lm-eval)")
    p.add_argument("--task", required=True)
    p.add_argument("--format", required=True, choices=("jsonl", "datasets", "lm-eval"))
    p.add_argument("out", help="output file (jsonl) or folder (datasets, lm-eval)")
    p.set_defaults(handler=cmd_export)
    tasks = sub.add_parser("tasks", help="task-file tools").add_subparsers(dest="tasks_command", required=True)
    p = tasks.add_parser("validate", help="report every problem of task files")
    p.add_argument("files", nargs="+")
    p.set_defaults(handler=cmd_tasks_validate)
    zoo = sub.add_parser("zoo", help="the built-in reference family").add_subparsers(dest="zoo_command", required=True)
    p = zoo.add_parser("build", help="train a reference family (resumable)")
    p.add_argument("--preset", default="default", help="default (v2, shipped), v2-tiny, v1, tiny or large")
    p.add_argument("--out", help="output folder (default: the user cache, never the shipped copy)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation and of the training text's order (0: the shipped family)")
    p.add_argument("--workers", type=int, help="sizes trained side by side, one process each (default: CPU cores "
                   "over the preset's threads); the weights do not depend on it")
    p.set_defaults(handler=cmd_zoo_build)
    p = zoo.add_parser("path", help="print the folder of a built family")
    p.add_argument("--preset", default="default")
    p.set_defaults(handler=cmd_zoo_path)
    add_commands(sub)
    add_analysis_commands(sub)
    add_gate_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `emergence` command."""
    enforce_offline()
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted; everything already scored is kept", file=sys.stderr)
        return 130
    except Exception as exc:  # the one place where failures become one line; bugs keep their traceback
        error = as_user_error(exc)
        if error is None:
            raise
        print(f"error: {error.one_line()}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
