"""The README's family tables and findings are exactly what the committed commands print for the committed run."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _main_job_run() -> str:
    """The run id the README's findings name."""
    match = re.search(r"benchmarks/readme_findings\.py results/([0-9a-f]{12})", README)
    assert match, "the README names no run for its findings"
    return match.group(1)


def _printed(script: str, *args: str) -> str:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT, check=True,
                         capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    return out.stdout


def _blocks(text: str) -> list[str]:
    """Paragraphs and table blocks, whitespace-normalised."""
    return [" ".join(block.split()) for block in re.split(r"\n\s*\n", text) if block.strip()]


def test_readme_family_tables_are_regenerated_by_the_committed_command():
    run = _main_job_run()
    printed = _printed("readme_family_table.py", f"results/{run}")
    readme = " ".join(README.split())
    for block in _blocks(printed):
        assert block in readme, f"README lacks this block printed by readme_family_table.py:\n{block[:300]}"


def test_readme_findings_are_regenerated_by_the_committed_command():
    run = _main_job_run()
    printed = _printed("readme_findings.py", f"results/{run}")
    readme = " ".join(README.split())
    for block in _blocks(printed):
        assert block in readme, f"README lacks this block printed by readme_findings.py:\n{block[:300]}"
