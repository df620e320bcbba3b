"""Files of the analysis and the report inside a run directory.

``analysis.json`` (summary + run id) and ``analysis/<table>.parquet`` come from `write_analysis`;
``plots/<figure>.png`` and the self-contained ``report.html`` from `write_report`. Every file is
written atomically. An analysis is one unit: its tables are written into a new folder that replaces
``analysis/`` in one rename, and analysis.json, written last, names the same generation id as
``analysis/GENERATION``; a reader that finds two different ids (a re-analysis killed half way) refuses
the mixture and `write_report` analyses again.
"""
from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis import AnalysisConfig, analyze, paired_comparison
from harness.analysis.result import TABLE_COLUMNS, TABLES
from harness.analysis.schema import CHECKPOINT_COLUMNS, RECORD_COLUMNS
from harness.analysis.skill_loss import per_skill_loss
from harness.report.canvas import empty_figure, to_png
from harness.report.data import ReportData, prepare_checkpoints
from harness.report.history_view import load_history
from harness.report.html import render_document
from harness.report.plots import FIGURES
from harness.store import load_run, read_table, remove_orphans, replace_folder, temp_folder, write_atomic, write_json
from harness.store import write_table
from skill_catalog.errors import UserError

ANALYSIS_JSON = "analysis.json"
ANALYSIS_DIR = "analysis"
PLOTS_DIR = "plots"
REPORT_HTML = "report.html"
GENERATION = "GENERATION"
"""File in ``analysis/`` holding the generation id that analysis.json must name."""


def _parquet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns mixing Python types (e.g. bool and str) as text, so Parquet can store them; None stays."""
    out = frame.copy()
    for column in out.columns[out.dtypes == object]:
        present = out[column].dropna()
        if present.map(type).nunique() > 1:
            out[column] = out[column].map(lambda v: v if v is None or (isinstance(v, float) and v != v) else str(v))
    return out


def _with_columns(frame: pd.DataFrame, columns: tuple[str, ...], always: bool = False) -> pd.DataFrame:
    """Adds the runner's missing columns as NaN: to an empty table, or `always` (checkpoints that failed before
    their size was known have no params)."""
    if len(frame) and not always:
        return frame
    return frame.reindex(columns=list(dict.fromkeys([*frame.columns, *columns])))


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


def write_analysis(run_dir: Path, *, seed: int = 0, n_boot: int = 200,
                   trained_ks: tuple[int, ...] | None = None) -> Path:
    """Runs every analysis on a run directory and writes its summary and tidy tables.

    Args:
        run_dir: a folder written by `emergence run`.
        seed: seed of every bootstrap.
        n_boot: bootstrap replicates.
        trained_ks: k the family was trained on; None reads them from the family manifest
            (`family_trained_ks`), and treats every k as trained when there is none.

    Returns:
        The path of analysis.json.

    Raises:
        UserError: when `run_dir` is not a finished run directory or its tables lack the runner's columns.
    """
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    config = AnalysisConfig(trained_ks=trained_ks or family_trained_ks(run_dir))
    records = _with_columns(run["records"], RECORD_COLUMNS)
    checkpoints = _with_columns(run["checkpoints"], CHECKPOINT_COLUMNS, always=True)
    try:
        result = analyze(records, checkpoints, seed=seed, n_boot=n_boot, config=config)
    except ValueError as err:
        raise UserError(f"{run_dir} cannot be analysed: {err}") from err
    frames = {**result.tables(), "per_skill_loss": per_skill_loss(records)}
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
    tables = {name: f"{ANALYSIS_DIR}/{name}.parquet" for name in frames}
    write_json(path, {"run_id": run_dir.name, "metric": config.metric, "tables": tables, **result.summary,
                      "generation": generation})
    return path


def _summary(run_dir: Path) -> dict[str, Any] | None:
    """analysis.json when it is readable and names the generation of ``analysis/``, else None."""
    try:
        summary = json.loads((run_dir / ANALYSIS_JSON).read_text())
        written = (run_dir / ANALYSIS_DIR / GENERATION).read_text().strip()
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) and summary.get("generation") == written else None


def _stale(run_dir: Path) -> bool:
    """True when the analysis is missing, unreadable, incomplete, mixed or older than the records."""
    summary = run_dir / ANALYSIS_JSON
    if _summary(run_dir) is None or any(not (run_dir / ANALYSIS_DIR / f"{t}.parquet").exists() for t in TABLES):
        return True
    records = run_dir / "records.parquet"
    return records.exists() and records.stat().st_mtime > summary.stat().st_mtime


def read_analysis(run_dir: Path) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """The written summary (analysis.json) and tidy tables of a run directory, from one and the same analysis.

    Raises:
        UserError: when the analysis is missing, unreadable or a mixture of two analyses.
    """
    run_dir = Path(run_dir)
    summary = _summary(run_dir)
    if summary is None:
        raise UserError(f"{run_dir}: no complete analysis (analysis.json missing, unreadable or from another "
                        f"analysis than analysis/, e.g. after a killed re-analysis); fix: run `emergence analyze {run_dir}`")
    tables = {}
    for name in TABLES:
        path = run_dir / ANALYSIS_DIR / f"{name}.parquet"
        frame = read_table(path) if path.exists() else pd.DataFrame()
        tables[name] = frame.reindex(columns=list(TABLE_COLUMNS[name]))
    return summary, tables


def choose_pair(records: pd.DataFrame, checkpoints: pd.DataFrame, paired: pd.DataFrame, *, metric: str,
                seed: int = 0, n_boot: int = 200) -> tuple[pd.DataFrame, str]:
    """The comparison of the two largest checkpoints (the lower-loss one is A), and a sentence saying so.

    Reuses the analyzer's adjacent-pair rows when the pair is adjacent in loss; otherwise runs
    `paired_comparison` on the pair.
    """
    ck = checkpoints[checkpoints["loss"].notna()].copy()
    if len(ck) < 2:
        return pd.DataFrame(), "needs 2 checkpoints with a loss"
    ck["_n"] = pd.to_numeric(ck["params"], errors="coerce")
    top = ck.sort_values(["_n", "loss"], ascending=[False, True], na_position="last").head(2)
    a, b = top.sort_values("loss")["checkpoint_id"].astype(str).tolist()
    rows = paired[(paired["checkpoint_a"].astype(str) == a) & (paired["checkpoint_b"].astype(str) == b)]
    if rows.empty and len(records):
        rows = paired_comparison(records, a, b, metric=metric, n_boot=n_boot, seed=seed)
    return rows.reset_index(drop=True), "The two largest checkpoints (by parameters; A has the lower loss)."


def load_report_data(run_dir: Path) -> ReportData:
    """Everything the report shows, from a run directory with a written analysis."""
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    summary, tables = read_analysis(run_dir)
    metric = summary.get("metric", AnalysisConfig().metric)
    checkpoints = prepare_checkpoints(run["checkpoints"], tables["excess_loss"])
    pair, note = choose_pair(run["records"], checkpoints, tables["paired"], metric=metric,
                             seed=summary.get("seed", 0), n_boot=summary.get("n_boot", 200))
    return ReportData(run_id=summary.get("run_id", run_dir.name), summary=summary, tables=tables,
                      checkpoints=checkpoints, records=run["records"], metric=metric, pair=pair, pair_note=note,
                      history=load_history(run_dir))


def render_figures(data: ReportData, out_dir: Path | None = None) -> dict[str, bytes]:
    """Every figure of `plots.FIGURES` as PNG bytes (also written to `out_dir` when given).

    A figure function that raises despite its contract becomes a panel naming the error, so one
    broken figure never costs the whole report.
    """
    pngs = {}
    for name, plot in FIGURES:
        try:
            fig = plot(data)
        except Exception as exc:  # the report must still be written; the panel shows what broke
            fig = empty_figure(name, f"the figure failed: {type(exc).__name__}: {exc}")
        pngs[name] = to_png(fig)
        if out_dir is not None:
            _atomic_write(Path(out_dir) / f"{name}.png", pngs[name])
    return pngs


def _atomic_write(path: Path, content: bytes) -> None:
    write_atomic(path, lambda tmp: tmp.write_bytes(content))


def write_report(run_dir: Path) -> Path:
    """Writes plots/*.png and the self-contained report.html of a run (analysing it first when needed).

    Args:
        run_dir: a folder written by `emergence run`.

    Returns:
        The path of report.html.

    Raises:
        UserError: when `run_dir` is not a finished run directory.
    """
    run_dir = Path(run_dir)
    if _stale(run_dir):
        write_analysis(run_dir)
    data = load_report_data(run_dir)
    figures = render_figures(data, run_dir / PLOTS_DIR)
    path = run_dir / REPORT_HTML
    _atomic_write(path, render_document(data, figures).encode("utf-8"))
    return path
