"""Class 2: an analysis is written as one unit; a re-analysis killed half way never leaves a mixture.

The kill is real (``os._exit`` in a child process, so no cleanup code runs) and lands either while the
tables are written or after they are in place but before analysis.json is: readers then see the
previous analysis whole, or refuse the mixture and `report` analyses again.
"""
from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.analysis.result import TABLES
from harness.analysis import io as analysis_io
from harness.report import build
from harness.storage.run_files import write_table
from skill_catalog.errors import UserError

from .helpers import assert_one_line_error, cli, synthetic_run

KILL = """
import os, sys
from pathlib import Path
import harness.analysis.io as analysis_io
target, after = sys.argv[2], int(sys.argv[3])
real = getattr(analysis_io, target)
calls = []
def dying(*args, **kwargs):
    calls.append(1)
    if len(calls) > after:
        os._exit(137)  # as abrupt as SIGKILL: no finally, no atexit
    return real(*args, **kwargs)
setattr(analysis_io, target, dying)
analysis_io.write_analysis(Path(sys.argv[1]), seed=7)
"""


@pytest.fixture()
def analysed(tmp_path: Path) -> Path:
    run_dir = synthetic_run(tmp_path / "run")
    analysis_io.write_analysis(run_dir, seed=0, n_boot=20)
    return run_dir


def _tables(run_dir: Path) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(run_dir / analysis_io.ANALYSIS_DIR / f"{name}.parquet") for name in TABLES}


def _change_records(run_dir: Path) -> None:
    """New records (one checkpoint's rows dropped), so every analysis table of the next analysis differs."""
    records = pd.read_parquet(run_dir / "records.parquet")
    first = records["checkpoint_id"].iloc[0]
    write_table(run_dir / "records.parquet", records[records["checkpoint_id"] != first])


def _kill_during(run_dir: Path, target: str, after: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", KILL, str(run_dir), target, str(after)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 137, done.stderr[-2000:]


def test_reanalysis_killed_while_writing_tables_leaves_the_previous_analysis_whole(analysed):
    before, summary = _tables(analysed), (analysed / analysis_io.ANALYSIS_JSON).read_text()
    _change_records(analysed)
    _kill_during(analysed, "write_table", after=len(TABLES) // 2)
    assert (analysed / analysis_io.ANALYSIS_JSON).read_text() == summary
    _, tables = analysis_io.read_analysis(analysed)
    for name in TABLES:  # every table the reader sees is the previous analysis's, none of the killed one's
        pd.testing.assert_frame_equal(tables[name], before[name].reindex(columns=tables[name].columns))


def test_reanalysis_killed_before_its_summary_is_refused_then_redone_by_report(analysed):
    _change_records(analysed)
    _kill_during(analysed, "write_json", after=0)
    with pytest.raises(UserError, match="emergence analyze"):
        analysis_io.read_analysis(analysed)  # new tables, old analysis.json: a mixture is refused
    build.write_report(analysed)
    summary, tables = analysis_io.read_analysis(analysed)
    assert summary["seed"] == 0  # redone by `report` (seed 0), consistent with its tables
    assert not list(analysed.glob(".*.tmp-*")), "the killed writer's temporary folder is cleaned up"


def test_reanalysis_on_a_full_disk_is_one_line_and_keeps_the_previous_analysis(analysed, capsys, monkeypatch):
    before = _tables(analysed)
    _change_records(analysed)
    real, calls = analysis_io.write_table, []

    def full_disk(*args, **kwargs):
        calls.append(1)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(analysis_io, "write_table", full_disk)
    code, _, err = cli(["analyze", analysed], capsys)
    assert_one_line_error(code, err, "No space left on device", "free disk space")
    assert not list(analysed.glob(".*.tmp-*"))  # the half-written analysis is gone, not orphaned
    monkeypatch.setattr(analysis_io, "is_stale", lambda run_dir: False)
    _, tables = analysis_io.read_analysis(analysed)
    for name in TABLES:
        pd.testing.assert_frame_equal(tables[name], before[name].reindex(columns=tables[name].columns))
