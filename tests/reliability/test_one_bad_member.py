"""Class 5: one bad family member never takes its siblings down; each fails alone with its own reason.

A single bad path given alone ends in one line naming the real reason (never a traceback from the
manifest writer); a size folder with one truncated step keeps its good steps and blames that step;
`--fail-fast` stops at the first failure of any kind, a missing path included, and leaves no run folder.
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from harness.run.config import RunConfig
from harness.run.runner import run
from harness.storage.run_files import load_run

from .helpers import cli, error_lines, write_tasks


def _missing(tmp_path: Path, family: Path) -> Path:
    return tmp_path / "no-such-folder"


def _no_config(tmp_path: Path, family: Path) -> Path:
    folder = shutil.copytree(family / "n20k" / "step00064", tmp_path / "no-config")
    (folder / "config.json").unlink()
    return folder


def _no_tokenizer(tmp_path: Path, family: Path) -> Path:
    folder = shutil.copytree(family / "n20k" / "step00064", tmp_path / "no-tokenizer")
    (folder / "tokenizer.json").unlink()
    return folder


def _empty(tmp_path: Path, family: Path) -> Path:
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


def _text_file(tmp_path: Path, family: Path) -> Path:
    (tmp_path / "notes.txt").write_text("not a model\n")
    return tmp_path / "notes.txt"


@pytest.mark.parametrize("make, reason", [(_missing, "no such checkpoint folder"), (_no_config, "no config.json"),
                                          (_no_tokenizer, "no tokenizer"), (_empty, "no weights"),
                                          (_text_file, "not a checkpoint")])
def test_a_single_bad_path_fails_with_its_reason_on_one_line(tiny_family, tmp_path, capsys, make, reason):
    bad = make(tmp_path, tiny_family)
    tasks = write_tasks(tmp_path / "tasks")
    code, out, err = cli(["run", "--family", bad, "--tasks", *tasks, "--out", tmp_path / "out", "--no-analyze"], capsys)
    assert code == 1 and "Traceback" not in err
    (line,) = error_lines(err)
    assert str(bad) in line and reason in line
    run_dir = next((tmp_path / "out").iterdir())
    assert (run_dir / "manifest.json").exists()  # the failed run is still a complete, readable record
    assert load_run(run_dir)["checkpoints"]["error"].str.contains(reason).all()


def test_a_truncated_step_fails_alone_and_its_good_siblings_are_scored(tiny_family, tmp_path):
    size = shutil.copytree(tiny_family / "n20k", tmp_path / "n20k")
    weights = size / "step00064" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    tasks = write_tasks(tmp_path / "tasks")
    config = RunConfig(family=(str(size),), tasks=tasks, out=str(tmp_path / "out"), analyze=False)
    run_dir, failures = run(config)
    assert len(failures) == 1 and failures[0].startswith("n20k/step00064: ") and "truncated" in failures[0]
    ckpts = load_run(run_dir)["checkpoints"].set_index("label")
    assert sorted(ckpts.index) == ["n20k", "n20k/step00064", "n20k/step00100"]
    assert ckpts.loc[["n20k", "n20k/step00100"], "ce_nats_sum"].map(math.isfinite).all()
    assert math.isnan(ckpts.loc["n20k/step00064", "ce_nats_sum"])


def test_fail_fast_stops_at_a_missing_path_before_scoring_anything(tiny_family, tmp_path, capsys):
    tasks = write_tasks(tmp_path / "tasks")
    args = ["run", "--family", tiny_family / "n20k" / "step00064", tmp_path / "nope", "--tasks", *tasks,
            "--out", tmp_path / "out", "--no-analyze", "--fail-fast"]
    code, out, err = cli(args, capsys)
    assert code == 2 and "Traceback" not in err
    (line,) = error_lines(err)
    assert "nope" in line
    assert not list((tmp_path / "out").glob("*/parts/checkpoint-*"))  # nothing was scored
    assert not list((tmp_path / "out").glob("*"))  # and no empty run folder is left behind


def test_bad_entries_of_a_family_manifest_fail_alone(tiny_family, tmp_path):
    (tmp_path / "notes.txt").write_text("not a model\n")
    good = tiny_family / "n20k" / "step00064"
    plain = shutil.copytree(tiny_family / "n60k" / "step00064", tmp_path / "plain")  # no step in name or meta
    (plain / "train_meta.json").unlink()
    (tmp_path / "family.yaml").write_text(
        "checkpoints:\n"
        f"  - {{path: {good}, label: good}}\n"
        f"  - {{path: {tmp_path / 'missing'}, label: missing}}\n"
        f"  - {{path: {tmp_path / 'notes.txt'}, label: text}}\n"
        f"  - {{path: {plain}, label: bad-step, step: not-a-number}}\n")
    config = RunConfig(family=(str(tmp_path / "family.yaml"),), tasks=write_tasks(tmp_path / "tasks"),
                       out=str(tmp_path / "out"), analyze=False)
    run_dir, failures = run(config)
    assert sorted(line.split(":")[0] for line in failures) == ["bad-step", "missing", "text"]
    assert all("\n" not in line for line in failures)
    ckpts = load_run(run_dir)["checkpoints"].set_index("label")
    assert math.isfinite(ckpts.loc["good", "ce_nats_sum"]) and ckpts.drop(index="good")["error"].notna().all()
