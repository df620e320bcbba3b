"""Class 4: a small task file cannot take the machine down, and `tasks validate` catches what `run` refuses.

Aliases ("billion laughs") are refused before anything is expanded; shots, k, items and text lengths
are capped, with the cap in the message; property-based fuzzing (hypothesis) runs in a child process
whose address space is capped, asserting one line, exit 2 and bounded memory for every file.
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import assert_one_line_error, cli

MEMORY_CAP = 2 << 30
"""Address space of the child processes (the CLI alone maps about 0.6 GB)."""
HEADER = "name: t\nversion: 1\nkind: composite\nskill_set: symbolic\n"
"""A valid composite task once `ks` is added (a test line adds it or breaks it)."""


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def _run_capped(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=_capped)


def _bomb(key: str) -> str:
    """Under 1 KB of YAML whose `key` expands to 10^9 strings (each level is ten aliases of the one before)."""
    levels = ['&a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    return HEADER + "ks: [1, 2]\n" + f"{key}: [{', '.join(levels)}]\n"


@pytest.mark.parametrize("key", ["skills", "modes"])
def test_alias_bomb_is_refused_in_one_line_within_bounded_memory(tmp_path, key):
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb(key))
    assert path.stat().st_size < 1024
    for command in (["tasks", "validate", str(path)], ["items", "--task", str(path)]):
        done = _run_capped(["-m", "harness", *command], timeout=120)
        assert done.returncode == 2 and "Traceback" not in done.stderr and "MemoryError" not in done.stderr
        assert "uses a YAML alias" in (done.stdout + done.stderr)
        assert len(done.stdout) + len(done.stderr) < 2_000


@pytest.mark.parametrize("line, cap", [("shots: 100000", "32"), ("items: {per_cell: 10000000}", "5000"),
                                       ("choices: 1000", "16"), ("max_new_tokens: 100000000", "1024"),
                                       ("description: " + "x" * 5000, "2000"), ("skills: [" + ", ".join(["mir"] * 500) + "]", "100")])
def test_sizes_over_their_cap_are_refused_naming_the_cap(tmp_path, capsys, line, cap):
    path = tmp_path / "big.yaml"
    path.write_text(HEADER + "ks: [1, 2]\n" + line + "\n")
    code, out, err = cli(["tasks", "validate", path], capsys)
    assert code == 2 and "1 problem(s)" in out and f"the most allowed is {cap}" in out
    code, out, err = cli(["items", "--task", path, "--show", "1"], capsys)
    assert_one_line_error(code, err, f"the most allowed is {cap}")


@pytest.mark.parametrize("line", ["ks: [100]", "ks: [9]", "ks: [1, 2]\nskills: [mir, mir]",
                                  "ks: [3]\nskills: [mir, sft]"])
def test_validate_refuses_what_run_would_refuse(tmp_path, capsys, line):
    path = tmp_path / "t.yaml"
    path.write_text(HEADER + line + "\n")
    code, out, err = cli(["tasks", "validate", path], capsys)
    assert code == 2 and "1 problem(s)" in out


def test_fuzzed_task_files_give_one_line_exit_2_and_bounded_memory(tmp_path):
    script = Path(__file__).with_name("fuzz_task_files.py")
    done = _run_capped([str(script), str(tmp_path), "250"], timeout=900)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-5000:])


def test_alias_bomb_in_a_family_manifest_is_refused_within_bounded_memory(tmp_path):
    levels = ['&a0 [{path: x}, {path: x}, {path: x}, {path: x}, {path: x}, {path: x}, {path: x}, {path: x}]']
    levels += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    manifest = tmp_path / "family.yaml"
    manifest.write_text(f"checkpoints: [{', '.join(levels)}]\n")
    done = _run_capped(["-m", "harness", "run", "--family", str(manifest), "--out", str(tmp_path / "out"),
                        "--no-analyze"], timeout=300)
    assert done.returncode in (1, 2) and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "uses a YAML alias" in errors[0] and len(errors[0]) < 1_000
