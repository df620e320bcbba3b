"""The README's family tables and findings are what the committed commands print for the committed main-job run,
re-analysed with the current code (so an analysis change that moves a README number fails until the README is
regenerated)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.snapshot_main_job import SNAPSHOT, restore

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _readme_run() -> str:
    """The run id the README's findings name."""
    match = re.search(r"benchmarks/readme_findings\.py results/([0-9a-f]{12})", README)
    assert match, "the README names no run for its findings"
    return match.group(1)


def _env() -> dict[str, str]:
    return {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _printed(script: str, run: Path) -> str:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), str(run)], cwd=ROOT, check=True,
                         capture_output=True, text=True, env=_env())
    return out.stdout


def _blocks(text: str) -> list[str]:
    """Paragraphs and table blocks, whitespace-normalised."""
    return [" ".join(block.split()) for block in re.split(r"\n\s*\n", text) if block.strip()]


@pytest.fixture(scope="module")
def analysed_run(tmp_path_factory) -> Path:
    """The committed snapshot of the README's run, analysed by the current code in a scratch folder."""
    manifest = json.loads((SNAPSHOT / "manifest.json").read_text())
    assert manifest["run_id"] == _readme_run(), "benchmarks/results/main_job is not the run the README names"
    run = tmp_path_factory.mktemp("main_job") / manifest["run_id"]
    restore(run)
    subprocess.run([sys.executable, "-m", "harness", "analyze", str(run)], cwd=ROOT, check=True, capture_output=True,
                   env={**_env(), "EMERGENCE_CACHE_DIR": str(run.parent / "cache")})
    return run


def _missing(printed: str) -> list[str]:
    readme = " ".join(README.split())
    return [block for block in _blocks(printed) if block not in readme]


def test_readme_family_tables_are_regenerated_by_the_committed_command(analysed_run):
    missing = _missing(_printed("readme_family_table.py", analysed_run))
    assert not missing, f"README lacks blocks printed by readme_family_table.py, e.g.:\n{missing[0][:300]}"


def test_readme_findings_are_regenerated_by_the_committed_command(analysed_run):
    missing = _missing(_printed("readme_findings.py", analysed_run))
    assert not missing, f"README lacks blocks printed by readme_findings.py, e.g.:\n{missing[0][:300]}"


def test_readme_v1_family_tables_are_regenerated_by_the_committed_command():
    """The first family's tables (kept to show what v2 fixed) are printed from its committed main-job tables."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "readme_family_table.py"),
                          str(ROOT / "benchmarks" / "results" / "v1_main_job"), "--layout", "v1", "--size", "n400k"],
                         cwd=ROOT, check=True, capture_output=True, text=True, env=_env()).stdout
    missing = _missing(out)
    assert not missing, f"README lacks blocks printed for the v1 run, e.g.:\n{missing[0][:300]}"


V2_SEEDS = ("seed0",) + tuple(sorted(p.name.removeprefix("v2_") for p in (ROOT / "benchmarks" / "results").glob("v2_seed*")))
"""The v2 build seeds whose run tables are committed (one README column each): seed 0 is the main job's run."""


def test_readme_v2_verdicts_are_regenerated_by_the_committed_command(tmp_path):
    runs = []
    for seed in V2_SEEDS:
        run = tmp_path / seed
        if seed == "seed0":
            restore(run)
        else:
            shutil.copytree(ROOT / "benchmarks" / "results" / f"v2_{seed}", run)
        subprocess.run([sys.executable, "-m", "harness", "analyze", str(run), "--trained-k", "1", "2", "3", "4"],
                       cwd=ROOT, check=True, capture_output=True,
                       env={**_env(), "EMERGENCE_CACHE_DIR": str(tmp_path / "cache")})
        runs.append(str(run))
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "readme_v2_verdicts.py"), *runs], cwd=ROOT,
                         check=True, capture_output=True, text=True, env=_env()).stdout
    missing = _missing(out)
    assert not missing, f"README lacks the v2 verdicts printed for {V2_SEEDS}, e.g.:\n{missing[0][:300]}"


def test_readme_calibration_table_is_the_committed_calibration_results():
    """Every row of benchmarks/results/calibration.json is in the README table as `bench_calibration --markdown`
    prints it, and the README states the count of rows that meet their target."""
    from benchmarks.bench_calibration import markdown

    rows = json.loads((ROOT / "benchmarks" / "results" / "calibration.json").read_text())["rows"]
    missing = [line for line in markdown(rows).splitlines() if line not in README]
    assert not missing, f"README calibration table lacks, e.g.:\n{missing[0][:300]}"
    met = sum(r["passed"] for r in rows)
    assert f"{met} of the {len(rows)} rows meet their target" in " ".join(README.split())


def test_report_caveat_of_the_pooled_collapse_fit_quotes_the_v2_calibration_rows():
    """The numbers the report prints about the pooled Weibull fit (`collapse.POOLED_FIT_CAVEAT`) are the v2 rows
    of benchmarks/results/calibration.json under a true a = b with tuple and item effects."""
    from harness.analysis.collapse import POOLED_FIT_CAVEAT

    rows = json.loads((ROOT / "benchmarks" / "results" / "calibration.json").read_text())["rows"]
    ag_v2 = {(r["procedure"], r["quantity"]): r["estimate"] for r in rows
             if "v2 suite" in r["scenario"] and r["scenario"].startswith("a = b = 1.5, tuple sd")}
    quoted = {("collapse interval of a - b", "coverage"): "held a true a = b in {:.0%}",
              ("collapse_test a=b", "size"): "alone rejected it in {:.1%}",
              ("collapse verdict 'a=b rejected' (parametric and shared-curve tests both reject)", "size"):
                  "(in {:.2%} of those runs)"}
    for key, phrase in quoted.items():
        assert phrase.format(ag_v2[key]) in POOLED_FIT_CAVEAT, (key, ag_v2[key])
