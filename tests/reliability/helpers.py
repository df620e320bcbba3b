"""Shared pieces of the reliability tests: small task files, damaged copies of the tiny family, CLI calls."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Callable

import pytest
from safetensors.torch import load_file, save_file

from harness.cli.main import main

COMPOSITE = """name: rel-composite
version: 1
kind: composite
skill_set: symbolic
ks: [1, 2]
modes: [chain]
items: {single_per_skill: 1, per_cell: 1}
scoring: [multiple_choice, gold_logprob]
max_new_tokens: 8
"""
TEXT = """name: rel-text
version: 1
kind: cross_entropy
source: catalog
skill_set: symbolic
seed: 5
pieces: 10
"""


def write_tasks(folder: Path) -> tuple[str, str]:
    """A two-item-per-cell composite suite and a short cross-entropy text; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "composite.yaml").write_text(COMPOSITE)
    (folder / "text.yaml").write_text(TEXT)
    return str(folder / "composite.yaml"), str(folder / "text.yaml")


def damaged_copy(source: Path, dest: Path, mutate: Callable[[dict], None] | None = None,
                 config: dict | None = None) -> Path:
    """A copy of a checkpoint folder whose state dict went through `mutate` and whose config got `config`."""
    shutil.copytree(source, dest)
    if mutate is not None:
        tensors = load_file(dest / "model.safetensors")
        mutate(tensors)
        save_file(tensors, dest / "model.safetensors", metadata={"format": "pt"})
    if config:
        data = json.loads((dest / "config.json").read_text())
        (dest / "config.json").write_text(json.dumps({**data, **config}))
    return dest


def cli(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """Runs the `emergence` command in this process; (exit status, stdout, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def error_lines(stderr: str) -> list[str]:
    """The lines of stderr that are the command's error messages."""
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def assert_one_line_error(code: int, stderr: str, *needles: str) -> str:
    """The command failed (exit 2) with exactly one stderr line, an `error:` naming every needle."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def synthetic_run(run_dir: Path) -> Path:
    """A finished run directory built from tests/test_report.py's synthetic family (no model is scored)."""
    spec = importlib.util.spec_from_file_location("rel_report_fixtures", Path(__file__).parent.parent / "test_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_run(run_dir)
