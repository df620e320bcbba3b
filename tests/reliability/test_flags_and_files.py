"""Class 7: flags say what they do, help matches behaviour, refusals name the flag, and run folders hold
only complete, group-readable results: no empty folder after a planning failure, no orphan temporary file."""
from __future__ import annotations

import os
import socket
import stat
import subprocess
import typing
from dataclasses import fields
from pathlib import Path

import pytest

from harness.checkpoints.discovery import discover
from harness.cli.main import build_parser
from harness.cli.run_command import config_from_args, field_docs
from harness.analysis.io import write_analysis
from harness.run.config import RunConfig
from harness.run.runner import plan_run, run
from skill_catalog.errors import UserError

from .helpers import cli, write_tasks

BOOLS = [f for f in fields(RunConfig) if typing.get_type_hints(RunConfig)[f.name] is bool]


def _config(argv: list[str]) -> RunConfig:
    return config_from_args(build_parser().parse_args(["run", *argv]))


@pytest.mark.parametrize("field", BOOLS, ids=lambda f: f.name)
def test_every_switch_does_what_its_name_says(field):
    flag = "--" + field.name.replace("_", "-")
    assert getattr(_config([]), field.name) is field.default
    assert getattr(_config([flag]), field.name) is True
    if field.default:
        assert getattr(_config(["--no-" + flag[2:]]), field.name) is False


def test_limit_is_per_cell_and_its_help_says_so(tiny_family, tmp_path):
    (tmp_path / "t.yaml").write_text("name: t\nversion: 1\nkind: composite\nskill_set: symbolic\nks: [1, 2]\n"
                                     "modes: [chain, conjunction]\nitems: {single_per_skill: 2, per_cell: 3}\n")
    plan = plan_run(RunConfig(family=(str(tiny_family / "n20k" / "step00064"),), tasks=(str(tmp_path / "t.yaml"),),
                              out=str(tmp_path / "out"), limit=1))
    cells = [(i.k, i.mode, i.split) for i in plan.items["t"]]
    assert len(cells) == len(set(cells)) == 5  # one item in each of the 5 cells, not 1 item in all
    assert "(k, mode, split) cell" in field_docs()["limit"] and "per cell, not per task" in field_docs()["limit"]


def test_pickle_refusal_names_the_cli_flag(tiny_family, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((tiny_family / "n20k" / "step00064" / name).read_bytes())
    (folder / "pytorch_model.bin").write_bytes(b"not opened")
    with pytest.raises(UserError, match="--allow-pickle"):
        discover(folder)


@pytest.mark.parametrize("flags", [["--device", "bogus"], ["--dtype", "float8", "--device", "cpu"],
                                   ["--batch-size", "-1"], ["--shard", "3/2"]])
def test_a_run_refused_while_planning_leaves_no_run_folder(tiny_family, tmp_path, capsys, flags):
    tasks = write_tasks(tmp_path / "tasks")
    args = ["run", "--family", tiny_family / "n20k" / "step00064", "--tasks", *tasks, "--out", tmp_path / "out",
            "--no-analyze", "--fail-fast", *flags]
    code, _, err = cli(args, capsys)
    assert code == 2 and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_orphan_temporary_files_of_a_killed_writer_are_removed(tiny_family, tmp_path):
    config = RunConfig(family=(str(tiny_family / "n20k" / "step00064"),), tasks=write_tasks(tmp_path / "tasks"),
                       out=str(tmp_path / "out"), analyze=False)
    run_dir, _ = run(config)
    host = socket.gethostname()
    orphan = run_dir / "parts" / f".records-x.parquet.tmp-{host}-{_dead_pid()}-abc123"
    in_flight = run_dir / "parts" / f".records-y.parquet.tmp-{host}-{os.getpid()}-def456"
    for path in (orphan, in_flight):
        path.write_bytes(b"half a parquet file")
    run(config)  # the resumed run cleans up after the killed one, never after a live writer
    assert not orphan.exists() and in_flight.exists()


def test_result_files_are_group_readable(tiny_family, tmp_path):
    previous = os.umask(0o022)
    try:
        config = RunConfig(family=(str(tiny_family / "n20k" / "step00064"),), tasks=write_tasks(tmp_path / "tasks"),
                           out=str(tmp_path / "out"), analyze=False)
        run_dir, _ = run(config)
        write_analysis(run_dir, n_boot=5)
    finally:
        os.umask(previous)
    paths = [run_dir, *run_dir.rglob("*")]
    assert any(p.name == "records.parquet" for p in paths) and any(p.parent.name == "analysis" for p in paths)
    unreadable = [str(p) for p in paths if not p.stat().st_mode & stat.S_IRGRP]
    assert unreadable == []
