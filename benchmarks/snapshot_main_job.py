"""Copies the tables of a main-job run into ``benchmarks/results/main_job/``: the evidence behind the README's numbers.

Usage: ``python benchmarks/snapshot_main_job.py results/<run id>``. Only what an analysis needs is kept (manifest,
records, checkpoints, cross-entropy), with the checkout's absolute path replaced by ``<repo>`` so the snapshot names
no machine (`restore` puts this checkout's path back). ``tests/test_readme_numbers.py`` re-analyses the snapshot with the current code and checks that the
README holds exactly what ``readme_family_table.py`` and ``readme_findings.py`` print for it.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / "benchmarks" / "results" / "main_job"
TABLES = ("records.parquet", "checkpoints.parquet", "cross_entropy.parquet")


PLACEHOLDER = "<repo>"
"""Stands for the checkout's absolute path in the snapshot."""


def _copy(source: Path, out: Path, old: str, new: str) -> None:
    """The manifest and tables of `source` written to `out` with `old` replaced by `new` in every text."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").write_text((source / "manifest.json").read_text().replace(old, new))
    for name in TABLES:
        table = pd.read_parquet(source / name)
        for column in table.columns:
            if pd.api.types.is_string_dtype(table[column]):
                table[column] = table[column].map(lambda v: v.replace(old, new) if isinstance(v, str) else v)
        table.to_parquet(out / name, index=False)


def snapshot(run_dir: Path, out: Path = SNAPSHOT, family: Path | None = None) -> None:
    """Writes the run's manifest and tables to `out`, paths inside the checkout made relative (and a family folder
    outside it, when given, written as ``<family>``)."""
    if family is None:
        _copy(run_dir, out, str(ROOT), PLACEHOLDER)
    else:
        _copy(run_dir, out, str(family.resolve()), "<family>")
    manifest = out / "manifest.json"  # the result cache and output folders are this machine's, not the run's
    text = re.sub(r'"cache_dir": "[^"]*"', '"cache_dir": "<cache>"', manifest.read_text())
    manifest.write_text(text.replace(f'"{run_dir.resolve().parent}"', '"<out>"'))


def restore(out: Path, snapshot_dir: Path = SNAPSHOT) -> None:
    """Writes the snapshot to `out` (a run folder) with paths pointing into this checkout again, as the run had
    them (the analysis reads the family manifest of the checkpoints' folder, e.g. which k were trained)."""
    _copy(snapshot_dir, out, PLACEHOLDER, str(ROOT))


if __name__ == "__main__":
    # python benchmarks/snapshot_main_job.py RUN [OUT FAMILY_DIR]: the v2 evidence run is kept this way too
    if len(sys.argv) == 4:
        snapshot(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        snapshot(Path(sys.argv[1]))
