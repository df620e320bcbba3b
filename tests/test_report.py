"""The analysis files, the self-contained HTML report, its figures and the analyze/report/compare commands."""
from __future__ import annotations

import base64
import importlib.util
import json
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.analysis.result import TABLE_COLUMNS, TABLES
from harness.gate.history import add_run, history_path
from harness.report import build
from harness.report.canvas import to_png
from harness.report.data import ReportData, checkpoints_for_report
from harness.report.elements import table
from harness.report.html import SECTIONS, render_document
from harness.report.plots import FIGURES
from harness.storage.run_files import write_json, write_table

BROKEN_ERROR = "weights unreadable: <script>alert(1)</script>"
BROKEN_LABEL = "n<b>&co"


def _synthetic():
    """tests/analysis/synthetic.py, loaded by path so this file does not depend on the test package layout."""
    spec = importlib.util.spec_from_file_location("report_synthetic", Path(__file__).parent / "analysis" / "synthetic.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_run(run_dir: Path) -> Path:
    """A run directory: 5 A&G-generated checkpoints with 2% failed records, plus one checkpoint that failed to load."""
    syn = _synthetic()
    ck = syn.make_checkpoints(sizes=(2e4, 1.2e5, 7e5, 4e6, 1e7))
    items = syn.make_items(ks=(1, 2, 3), n_tuples=4, items_per_tuple=4, items_per_skill=8)
    records = syn.make_records(ck, items, syn.ag_competence(lam=2.0), p_fail=0.02)
    broken = ck.iloc[[0]].assign(checkpoint_id="ckbroken", label=BROKEN_LABEL, ce_nats_sum=np.nan, ce_tokens=0)
    ck = pd.concat([ck.assign(error=None), broken.assign(error=BROKEN_ERROR)], ignore_index=True)
    lost = records[records["checkpoint_id"] == "ck00"].assign(checkpoint_id="ckbroken", value=np.nan,
                                                              error="checkpoint failed to load")
    records = pd.concat([records, lost], ignore_index=True)
    records["checkpoint_label"] = records["checkpoint_id"].map(dict(zip(ck["checkpoint_id"], ck["label"])))
    write_table(run_dir / "records.parquet", records)
    write_table(run_dir / "checkpoints.parquet", ck.drop(columns=["true_excess"]))
    write_table(run_dir / "cross_entropy.parquet", ck[["checkpoint_id", "ce_nats_sum", "ce_tokens"]])
    write_json(run_dir / "manifest.json", {"run_id": run_dir.name})
    return run_dir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic run whose report was written without a prior analysis (write_report analyses it itself)."""
    path = make_run(tmp_path_factory.mktemp("runs") / "syn-run")
    add_run(path, history_path(path.parent))  # a monitoring history next to the run: the trend figure has data
    real = build.write_analysis
    calls = []

    def quick(run, **kw):
        calls.append(run)
        return real(run, seed=0, n_boot=30)

    build.write_analysis = quick  # the report's own analysis, with fewer bootstrap replicates
    try:
        build.write_report(path)
    finally:
        build.write_analysis = real
    assert calls == [path], "write_report must analyse a run that has no analysis.json"
    return path


@pytest.fixture(scope="module")
def page(run_dir: Path) -> str:
    return (run_dir / "report.html").read_text(encoding="utf-8")


class _Tags(HTMLParser):
    """Collects (tag, attributes) and the text of <td data-col=...> cells."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.cells: list[tuple[str, str]] = []
        self._cell: list | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "td":
            self._cell = [attrs.get("data-col", ""), ""]

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.cells.append(tuple(self._cell))
            self._cell = None


def parse(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    return parser


def test_write_analysis_writes_the_summary_and_every_tidy_table(run_dir: Path):
    summary = json.loads((run_dir / "analysis.json").read_text())
    assert summary["run_id"] == "syn-run" and set(summary["analyses"]) >= {"scaling", "collapse", "paired"}
    for name in TABLES:
        frame = pd.read_parquet(run_dir / "analysis" / f"{name}.parquet")
        assert list(frame.columns) == list(TABLE_COLUMNS[name])
    assert len(pd.read_parquet(run_dir / "analysis" / "competence.parquet")) > 0


def test_report_has_every_section_and_an_embedded_png_per_figure(run_dir: Path, page: str):
    ids = {attrs.get("id") for _, attrs in parse(page).tags}
    assert {"headline", *(sid for sid, _, _ in SECTIONS)} <= ids
    assert {f"fig-{name}" for name, _ in FIGURES} <= ids
    images = [attrs["src"] for tag, attrs in parse(page).tags if tag == "img"]
    assert len(images) >= len(FIGURES)
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.stem for p in (run_dir / "plots").glob("*.png")) == sorted(name for name, _ in FIGURES)


def test_report_references_nothing_outside_itself(page: str):
    for tag, attrs in parse(page).tags:
        for key in ("src", "href"):
            value = attrs.get(key)
            if value is not None:
                assert "http://" not in value and "https://" not in value, (tag, value[:80])
                assert value.startswith(("data:", "#")), (tag, value[:80])
    assert "<script" not in page and "@import" not in page and "url(" not in page


def test_data_text_is_escaped(page: str):
    assert "<script>alert(1)</script>" not in page and "<b>&co" not in page
    assert "weights unreadable: &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "n&lt;b&gt;&amp;co" in page


def test_nan_is_a_dash_with_its_reason_never_zero(page: str):
    checkpoints = page[page.index('id="checkpoints"'):page.index('id="failures"')]
    row = checkpoints[checkpoints.index("n&lt;b&gt;&amp;co"):]
    row = row[:row.index("</tr>")]
    cells = dict(parse(f"<table><tr><td>{row}</tr></table>").cells)
    assert cells["loss"].startswith("\u2014") and cells["bits_per_byte"].startswith("\u2014")
    assert "weights unreadable" in checkpoints[checkpoints.index("</table>"):]  # the footnote gives the reason
    competence = page[page.index('id="competence"'):page.index('id="skills"')]
    broken = competence[competence.index("n&lt;b&gt;&amp;co"):]
    values = [text for col, text in parse(broken[:broken.index("</tr>")] + "</tr>").cells if "k=" in col]
    assert values and all(v.startswith("\u2014") for v in values)


def test_table_cells_distinguish_missing_from_zero():
    cells = parse(table(["x"], [[float("nan")], [0.0], [None], [0]], keys=["x"])).cells
    assert [text for _, text in cells] == ["\u2014", "0", "\u2014", "0"]
    noted = table(["x"], [[float("nan")]], keys=["x"], row_reasons=["parse failure"])
    assert "parse failure" in noted and "\u2014" in noted


def _empty_data(checkpoints: pd.DataFrame) -> ReportData:
    tables = {name: pd.DataFrame(columns=list(TABLE_COLUMNS[name])) for name in TABLES}
    return ReportData(run_id="empty", summary={"analyses": {"all": {"status": "skipped", "reason": "no records"}}},
                      tables=tables, checkpoints=checkpoints_for_report(checkpoints), records=pd.DataFrame())


def _row_of(html: str, key: str, value: str) -> str:
    """The first <tr> of a rendered table whose `key` column shows `value`."""
    at = html.index(f'<td data-col="{key}">{value}</td>')
    return html[html.rindex("<tr>", 0, at):html.index("</tr>", at)]


def test_a_missing_value_shows_the_reason_of_the_object_it_belongs_to():
    from harness.analysis.result import MISSING, summary_entry
    from harness.report.sections import collapse_section, scaling_section

    data = _empty_data(pd.DataFrame())
    # the summary lists the conjunction test first, the tidy table the chain row first: rows are matched by mode
    tests = [{"mode": "conjunction", "p_a_eq_b": np.nan, MISSING: {"p_a_eq_b": "conjunction's own reason"}},
             {"mode": "chain", "p_a_eq_b": np.nan, MISSING: {"p_a_eq_b": "chain's own reason"}}]
    fits = [{"form": "N", "variant": "free_E", "E": np.nan, MISSING: {"E": "first fit's reason"}},
            {"form": "N", "variant": "fixed_E", "E": np.nan, MISSING: {"E": "second fit's reason"}}]
    data.summary["analyses"] = {"collapse": summary_entry({"status": "ok", "reason": None, "tests": tests}),
                                "scaling": summary_entry({"status": "ok", "reason": None, "fits": fits})}
    data.tables["collapse"] = pd.DataFrame({"mode": ["chain", "conjunction"], "p_a_eq_b": [np.nan, np.nan]}).reindex(
        columns=list(TABLE_COLUMNS["collapse"]))
    collapse = collapse_section(data, {})
    assert "chain&#x27;s own reason" in _row_of(collapse, "mode", "chain")
    assert "conjunction&#x27;s own reason" in _row_of(collapse, "mode", "conjunction")
    scaling = scaling_section(data, {})
    assert "first fit&#x27;s reason" in _row_of(scaling, "variant", "free_E")
    assert "second fit&#x27;s reason" in _row_of(scaling, "variant", "fixed_E")


def test_the_failures_section_lists_every_missing_summary_value_with_where_it_is():
    from harness.analysis.result import MISSING, summary_entry
    from harness.report.sections_checks import failures_section

    data = _empty_data(pd.DataFrame({"checkpoint_id": ["a"], "label": ["a"], "error": [None]}))
    data.summary["analyses"] = {"scaling": summary_entry({"status": "ok", "reason": None, "c": np.nan, "fits": [
        {"E": 1.0}, {"E": np.nan, MISSING: {"E": "not identified"}}]})}
    html = failures_section(data, {})
    assert "2 summary values are missing" in html
    assert '<td data-col="value">fits[1].E</td><td data-col="reason">not identified</td>' in html


@pytest.mark.parametrize("checkpoints", [
    pd.DataFrame(),
    pd.DataFrame({"checkpoint_id": ["a", "b"], "label": ["a", "b"], "params": [np.nan, np.nan],
                  "ce_nats_sum": [np.nan, np.nan], "ce_tokens": [0, 0], "error": ["oom", "oom"]}),
], ids=["no-checkpoints", "all-nan"])
def test_every_figure_and_the_page_survive_empty_or_nan_data(checkpoints: pd.DataFrame):
    data = _empty_data(checkpoints)
    figures = {name: to_png(plot(data)) for name, plot in FIGURES}
    assert all(png[:4] == b"\x89PNG" for png in figures.values())
    html = render_document(data, figures)
    assert 'id="headline"' in html and html.count("data:image/png;base64,") == len(FIGURES)


def test_the_report_takes_its_pair_and_skill_loss_from_the_analysis_not_from_the_records(run_dir: Path):
    from harness.report.plots_checks import plot_skill_loss
    from harness.storage.run_files import load_run

    run = load_run(run_dir)
    blank = {**run, "records": run["records"].iloc[:0]}  # nothing left to recompute them from
    data = build.load_report_data(run_dir, blank)
    written = pd.read_parquet(run_dir / "analysis" / "report_pair.parquet")
    assert len(data.pair) > 0 and len(data.pair) == len(written)
    assert data.pair_note.startswith("The two largest checkpoints")
    assert len(data.table("per_skill_loss")) > 0
    texts = " ".join(t.get_text() for t in plot_skill_loss(data).findobj(lambda o: hasattr(o, "get_text")))
    assert "no gold log-prob records" not in texts


def test_figures_draw_real_panels_on_the_synthetic_run(run_dir: Path):
    data = build.load_report_data(run_dir)
    for name, plot in FIGURES:
        fig = plot(data)
        texts = " ".join(t.get_text() for t in fig.findobj(lambda o: hasattr(o, "get_text")))
        assert "not enough data" not in texts, name


def test_a_run_where_every_checkpoint_failed_still_gets_a_report(tmp_path: Path):
    write_table(tmp_path / "records.parquet", pd.DataFrame())
    write_table(tmp_path / "checkpoints.parquet", pd.DataFrame([
        {"checkpoint_id": "x1", "label": "n1", "error": "CUDA out of memory"},
        {"checkpoint_id": "x2", "label": "n2", "error": "unreadable weights"}]))
    write_table(tmp_path / "cross_entropy.parquet", pd.DataFrame())
    html = build.write_report(tmp_path).read_text()
    assert "CUDA out of memory" in html and html.count("data:image/png;base64,") == len(FIGURES)
    assert "no records belong to a listed checkpoint" in html


@pytest.fixture
def cli():
    """`harness.cli.main`, which registers the analyze/report/compare commands."""
    from harness.cli.main import main

    return main


def test_cli_analyze_prints_a_summary_per_checkpoint(cli, run_dir: Path, capsys):
    assert cli(["analyze", str(run_dir), "--n-boot", "20", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "n10000000" in out and "CE (nats/token)" in out and "k=3" in out and "collapse (chain)" in out
    assert json.loads((run_dir / "analysis.json").read_text())["n_boot"] == 20


def test_cli_report_prints_the_report_path(cli, run_dir: Path, capsys):
    assert cli(["report", str(run_dir)]) == 0
    assert capsys.readouterr().out.strip() == str(run_dir / "report.html")


def test_cli_compare_prints_the_clustered_test_adjusted_p_and_the_paired_difference(cli, run_dir: Path, capsys):
    assert cli(["compare", str(run_dir), "n10000000", "ck03", "--metric", "exact_match"]) == 0
    out = capsys.readouterr().out
    assert "A = n10000000" in out and "clustered p" in out and "holm p" in out and "only A" in out and "[" in out


def test_cli_compare_unknown_label_is_a_one_line_user_error(cli, run_dir: Path, capsys):
    assert cli(["compare", str(run_dir), "nope", "ck03"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope" in err and "n10000000" in err


def test_cli_bad_run_folder_is_a_one_line_user_error(cli, tmp_path: Path, capsys):
    assert cli(["report", str(tmp_path / "missing")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


@pytest.mark.browser
@pytest.mark.skipif(_chromium() is None, reason="no chromium executable; install it with `apt-get install chromium`")
def test_report_renders_in_headless_chromium_offline(run_dir: Path):
    from playwright.sync_api import sync_playwright

    url, errors, requests = (run_dir / "report.html").as_uri(), [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), timeout=60_000, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run"])
        try:
            page = browser.new_page()
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("request", lambda req: requests.append(req.url))
            page.goto(url, wait_until="load")
            images = page.evaluate("Array.from(document.images, i => [i.complete, i.naturalWidth])")
        finally:
            browser.close()
    assert len(images) >= len(FIGURES) and all(done and width > 0 for done, width in images)
    assert errors == []
    assert [r for r in requests if not r.startswith("data:")] == [url]


def test_a_report_that_must_analyse_first_reads_the_run_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import harness.analysis.io as analysis_io
    from harness.storage.run_files import load_run

    run_dir = make_run(tmp_path / "run")
    reads = []

    def counted(path):
        reads.append(path)
        return load_run(path)

    monkeypatch.setattr(build, "load_run", counted)
    monkeypatch.setattr(analysis_io, "load_run", counted)
    real = analysis_io.write_analysis
    monkeypatch.setattr(build, "write_analysis", lambda run, **kw: real(run, **{**kw, "n_boot": 5}))
    build.write_report(run_dir)
    assert (run_dir / "analysis.json").exists() and len(reads) == 1
