"""Files of an analysis inside a run directory: ``analysis.json`` and ``analysis/<table>.parquet``.

`write_analysis` runs `analyze` on a run and writes its summary and tidy tables, plus the two views the
report shows and must not recompute: each skill's own loss (``per_skill_loss``) and the paired comparison
of the two largest checkpoints (``report_pair``). Every file is written atomically. An analysis is one
unit: its tables are written into a new folder that replaces ``analysis/`` in one rename, and
analysis.json, written last, names the same generation id as ``analysis/GENERATION``; a reader that
finds two different ids (a re-analysis killed half way) refuses the mixture (`read_analysis`), and
`is_stale` tells the report to analyse again.
"""
from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis.analyze import analyze
from harness.analysis.paired import PAIRED_COLUMNS, largest_pair
from harness.analysis.result import TABLE_COLUMNS, TABLES, AnalysisConfig
from harness.analysis.schema import prepare_checkpoints
from harness.analysis.skill_loss import SKILL_LOSS_COLUMNS, per_skill_loss
from harness.storage.run_files import load_run, read_table, remove_orphans, replace_folder, temp_folder, write_atomic, write_json
from harness.storage.run_files import write_table
from skill_catalog.errors import UserError

ANALYSIS_JSON = "analysis.json"
ANALYSIS_DIR = "analysis"
GENERATION = "GENERATION"
"""File in ``analysis/`` holding the generation id that analysis.json must name."""
VIEW_COLUMNS: dict[str, tuple[str, ...]] = {"per_skill_loss": SKILL_LOSS_COLUMNS, "report_pair": PAIRED_COLUMNS}
"""Tables written next to the analyzer's own (`result.TABLES`) for the report."""
ALL_COLUMNS: dict[str, tuple[str, ...]] = {**{name: TABLE_COLUMNS[name] for name in TABLES}, **VIEW_COLUMNS}
"""Columns of every table of ``analysis/``."""


def _parquet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns mixing Python types (e.g. bool and str) as text, so Parquet can store them; None stays."""
    out = frame.copy()
    for column in out.columns[out.dtypes == object]:
        present = out[column].dropna()
        if present.map(type).nunique() > 1:
            out[column] = out[column].map(lambda v: v if v is None or (isinstance(v, float) and v != v) else str(v))
    return out


def family_trained_ks(run_dir: Path) -> tuple[int, ...] | None:
    """k of the training pieces of the run's family, from its family manifest (training_text.spec.k_weights).

    The built-in family trains on pieces of k = 1..4 (one weight per k). None when the run's manifest
    names no family manifest, or its families disagree: the analyzer then treats every k as trained.
    """
    import yaml

    try:
        families = json.loads((Path(run_dir) / "manifest.json").read_text())["config"]["family"]
    except (OSError, KeyError, TypeError, ValueError):
        return None
    found = set()
    for entry in families or ():
        path = Path(entry)
        path = path / "family.yaml" if path.is_dir() else path
        if path.suffix not in (".yaml", ".yml") or not path.is_file():
            return None
        try:
            weights = yaml.safe_load(path.read_text())["training_text"]["spec"]["k_weights"]
        except (OSError, KeyError, TypeError, yaml.YAMLError):
            return None
        found.add(tuple(range(1, len(weights) + 1)))
    return found.pop() if len(found) == 1 else None


def write_analysis(run_dir: Path, *, seed: int = 0, n_boot: int = 200, trained_ks: tuple[int, ...] | None = None,
                   tables: dict[str, pd.DataFrame] | None = None) -> Path:
    """Runs every analysis on a run directory and writes its summary and tidy tables.

    Args:
        run_dir: a folder written by `emergence run`.
        seed: seed of every bootstrap.
        n_boot: bootstrap replicates.
        trained_ks: k the family was trained on; None reads them from the family manifest
            (`family_trained_ks`), and treats every k as trained when there is none.
        tables: the run's tables when the caller has read them already (`store.load_run`).

    Returns:
        The path of analysis.json.

    Raises:
        UserError: when `run_dir` is not a finished run directory or its tables lack the runner's columns.
    """
    run_dir = Path(run_dir)
    run = tables if tables is not None else load_run(run_dir)
    config = AnalysisConfig(trained_ks=trained_ks or family_trained_ks(run_dir))
    records, checkpoints = run["records"], run["checkpoints"]
    try:
        result = analyze(records, checkpoints, seed=seed, n_boot=n_boot, config=config)
        pair, pair_note = largest_pair(records, prepare_checkpoints(checkpoints), result.paired, metric=config.metric,
                                       seed=seed, n_boot=n_boot)
    except ValueError as err:
        raise UserError(f"{run_dir} cannot be analysed: {err}") from err
    frames = {**result.tables(), "per_skill_loss": per_skill_loss(records), "report_pair": pair}
    remove_orphans(run_dir)
    generation = uuid.uuid4().hex
    staged = temp_folder(run_dir / ANALYSIS_DIR)
    try:
        for name, frame in frames.items():
            write_table(staged / f"{name}.parquet", _parquet_safe(frame))
        write_atomic(staged / GENERATION, lambda tmp: tmp.write_text(generation))
        replace_folder(staged, run_dir / ANALYSIS_DIR)
    except BaseException:  # e.g. a full disk: the previous analysis stays, the half-written one goes
        shutil.rmtree(staged, ignore_errors=True)
        raise
    path = run_dir / ANALYSIS_JSON
    files = {name: f"{ANALYSIS_DIR}/{name}.parquet" for name in frames}
    write_json(path, {"run_id": run_dir.name, "metric": config.metric, "tables": files, **result.summary,
                      "report_pair_note": pair_note, "generation": generation})
    return path


def _summary(run_dir: Path) -> dict[str, Any] | None:
    """analysis.json when it is readable and names the generation of ``analysis/``, else None."""
    try:
        summary = json.loads((run_dir / ANALYSIS_JSON).read_text())
        written = (run_dir / ANALYSIS_DIR / GENERATION).read_text().strip()
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) and summary.get("generation") == written else None


def is_stale(run_dir: Path) -> bool:
    """True when the analysis is missing, unreadable, incomplete, mixed or older than the records."""
    run_dir = Path(run_dir)
    summary = run_dir / ANALYSIS_JSON
    if _summary(run_dir) is None or any(not (run_dir / ANALYSIS_DIR / f"{t}.parquet").exists() for t in ALL_COLUMNS):
        return True
    records = run_dir / "records.parquet"
    return records.exists() and records.stat().st_mtime > summary.stat().st_mtime


def read_analysis(run_dir: Path) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """The written summary (analysis.json) and tidy tables of a run directory, from one and the same analysis.

    The tables are the analyzer's (`result.TABLES`) and the report's views (`VIEW_COLUMNS`), each with its
    columns (empty when absent).

    Raises:
        UserError: when the analysis is missing, unreadable or a mixture of two analyses.
    """
    run_dir = Path(run_dir)
    summary = _summary(run_dir)
    if summary is None:
        raise UserError(f"{run_dir}: no complete analysis (analysis.json missing, unreadable or from another "
                        f"analysis than analysis/, e.g. after a killed re-analysis); fix: run `emergence analyze {run_dir}`")
    tables = {}
    for name, columns in ALL_COLUMNS.items():
        path = run_dir / ANALYSIS_DIR / f"{name}.parquet"
        frame = read_table(path) if path.exists() else pd.DataFrame()
        tables[name] = frame.reindex(columns=list(columns))
    return summary, tables
