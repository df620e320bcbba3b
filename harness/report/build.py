"""The report files of a run directory: ``plots/<figure>.png`` and the self-contained ``report.html``.

The report only reads: the run's tables (once) and the analysis written by `analysis.io.write_analysis`,
which it runs first when the analysis is missing, stale or a mixture of two (see `analysis.io`). Every
file is written atomically.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.analysis.io import is_stale, read_analysis, write_analysis
from harness.analysis.result import AnalysisConfig
from harness.report.canvas import empty_figure, to_png
from harness.report.data import ReportData, checkpoints_for_report
from harness.report.history_view import load_history
from harness.report.html import render_document
from harness.report.plots import FIGURES
from harness.storage.run_files import load_run, write_atomic

PLOTS_DIR = "plots"
REPORT_HTML = "report.html"


def load_report_data(run_dir: Path, run: dict[str, pd.DataFrame] | None = None) -> ReportData:
    """Everything the report shows, from a run directory with a written analysis.

    Args:
        run_dir: the run directory.
        run: its tables when the caller has read them already (`store.load_run`).
    """
    run_dir = Path(run_dir)
    run = run if run is not None else load_run(run_dir)
    summary, tables = read_analysis(run_dir)
    metric = summary.get("metric", AnalysisConfig().metric)
    checkpoints = checkpoints_for_report(run["checkpoints"], tables["excess_loss"])
    return ReportData(run_id=summary.get("run_id", run_dir.name), summary=summary, tables=tables,
                      checkpoints=checkpoints, records=run["records"], metric=metric, pair=tables["report_pair"],
                      pair_note=summary.get("report_pair_note") or "", history=load_history(run_dir))


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


def write_report(run_dir: Path, tables: dict[str, pd.DataFrame] | None = None) -> Path:
    """Writes plots/*.png and the self-contained report.html of a run (analysing it first when needed).

    Args:
        run_dir: a folder written by `emergence run`.
        tables: the run's tables when the caller has read them already (`store.load_run`); the run is
            read once either way.

    Returns:
        The path of report.html.

    Raises:
        UserError: when `run_dir` is not a finished run directory.
    """
    run_dir = Path(run_dir)
    run = tables if tables is not None else load_run(run_dir)
    if is_stale(run_dir):
        write_analysis(run_dir, tables=run)
    data = load_report_data(run_dir, run)
    figures = render_figures(data, run_dir / PLOTS_DIR)
    path = run_dir / REPORT_HTML
    _atomic_write(path, render_document(data, figures).encode("utf-8"))
    return path
