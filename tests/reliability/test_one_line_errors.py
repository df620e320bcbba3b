"""Class 6: every listed failure is one line naming the problem, a non-zero exit, and nothing half-written."""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.storage.result_cache import ResultCache
from harness.model.hf_model import HFModel
from harness.analysis import io as analysis_io

from .helpers import assert_one_line_error, cli, synthetic_run, write_tasks

def _run_args(tiny_family: Path, tmp_path: Path, *extra) -> list:
    tasks = write_tasks(tmp_path / "tasks")
    return ["run", "--family", tiny_family / "n20k" / "step00064", "--tasks", *tasks, "--out", tmp_path / "out",
            "--no-analyze", *extra]


def _nothing_written(out: Path) -> bool:
    return not out.exists() or not any(out.iterdir())


def test_task_file_that_is_not_utf8(tiny_family, tmp_path, capsys):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: caf\xe9\nversion: 1\nkind: composite\n".encode("latin-1"))
    args = ["run", "--family", tiny_family / "n20k" / "step00064", "--tasks", bad, "--out", tmp_path / "out"]
    assert_one_line_error(*cli(args, capsys)[::2], "latin1.yaml", "UTF-8")
    assert _nothing_written(tmp_path / "out")


def test_out_that_is_a_file(tiny_family, tmp_path, capsys):
    (tmp_path / "out").write_text("a file\n")
    assert_one_line_error(*cli(_run_args(tiny_family, tmp_path), capsys)[::2], "--out", "is a file")


def _without_root_override() -> None:
    """Drops root's permission override (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) from the child's capability
    bounding set, so after exec it obeys file modes like any user (root's own private folders stay readable)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def test_out_that_is_read_only_for_a_user_without_root_override(tmp_path):
    out = tmp_path / "read-only"
    out.mkdir()
    os.chmod(out, 0o555)
    try:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "harness", "run", "--family", str(tmp_path / "nope"), "--out", str(out),
               "--no-analyze"]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300,
                              preexec_fn=_without_root_override if os.geteuid() == 0 else None)
        assert_one_line_error(done.returncode, done.stderr, str(out), "not writable")
        assert not any(out.iterdir())
    finally:
        os.chmod(out, 0o755)


def test_full_disk_reports_disk_full_not_cannot_rollback(tiny_family, tmp_path, capsys, monkeypatch):
    real = ResultCache._connect

    def tiny_disk(self):  # SQLite's own "database or disk is full" (SQLITE_FULL), as on a full disk
        conn = real(self)
        if self.path.name == "results.sqlite":
            conn.execute("PRAGMA max_page_count=2")
        return conn

    monkeypatch.setattr(ResultCache, "_connect", tiny_disk)
    code, out, err = cli(_run_args(tiny_family, tmp_path), capsys)
    line = assert_one_line_error(code, err, "disk is full")
    assert "cannot rollback" not in line
    assert _nothing_written(tmp_path / "out")


@pytest.fixture()
def finished_run(tmp_path: Path) -> Path:
    run_dir = synthetic_run(tmp_path / "run")
    analysis_io.write_analysis(run_dir, n_boot=20)
    return run_dir


def test_report_regenerates_a_corrupted_analysis_json(finished_run, capsys):
    (finished_run / analysis_io.ANALYSIS_JSON).write_text('{"run_id": "x", "metric": ')
    code, out, err = cli(["report", finished_run], capsys)
    assert code == 0 and "Traceback" not in err
    summary, _ = analysis_io.read_analysis(finished_run)  # rewritten whole
    assert summary["run_id"] == finished_run.name


@pytest.mark.parametrize("command", [["analyze"], ["compare", None, "ck01", "ck02"], ["report"]])
def test_truncated_records_parquet(finished_run, capsys, command):
    records = finished_run / "records.parquet"
    records.write_bytes(records.read_bytes()[: records.stat().st_size // 3])
    args = [finished_run if part is None else part for part in command]
    args.insert(1, finished_run) if command[1:2] != [None] else None
    assert_one_line_error(*cli(args, capsys)[::2], "records.parquet", "emergence run")


def test_unknown_device(tiny_family, tmp_path, capsys):
    assert_one_line_error(*cli(_run_args(tiny_family, tmp_path, "--device", "bogus"), capsys)[::2], "bogus")
    assert _nothing_written(tmp_path / "out")


def test_cuda_device_on_a_machine_without_cuda(tiny_family, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert_one_line_error(*cli(_run_args(tiny_family, tmp_path, "--device", "cuda"), capsys)[::2], "no CUDA device")
    assert _nothing_written(tmp_path / "out")


@pytest.mark.parametrize("size", ["-4", "0", "many"])
def test_bad_batch_size_is_caught_before_any_checkpoint_loads(tiny_family, tmp_path, capsys, monkeypatch, size):
    def never(*args, **kwargs):
        raise AssertionError("a checkpoint was loaded before the flags were checked")

    monkeypatch.setattr(HFModel, "from_checkpoint", never)
    assert_one_line_error(*cli(_run_args(tiny_family, tmp_path, f"--batch-size={size}"), capsys)[::2], "--batch-size")
    assert _nothing_written(tmp_path / "out")
