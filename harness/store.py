"""The run directory: tidy Parquet tables written atomically, per checkpoint, then combined.

Layout of ``results/<run_id>/``: ``manifest.json``; ``records.parquet`` (one row per checkpoint x
item x metric); ``checkpoints.parquet`` (one row per checkpoint); ``cross_entropy.parquet`` (one
row per checkpoint x text); and ``parts/`` — one file per finished checkpoint, each renamed into
place only when complete, which is what makes a killed run resume with nothing lost or duplicated.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from skill_catalog.errors import UserError

TABLES = ("records", "checkpoints", "cross_entropy")


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_table(path: Path, rows: list[dict] | pd.DataFrame) -> None:
    """Writes a Parquet table atomically (a reader never sees half a file)."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    _atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))


def json_safe(obj: Any) -> Any:
    """`obj` with NaN/inf as None, paths as strings, numpy scalars as Python numbers (for JSON)."""
    if hasattr(obj, "item") and callable(obj.item) and not isinstance(obj, (list, tuple, dict)):
        obj = obj.item()  # numpy scalars
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no NaN; readers get null and the reason stays in an error field
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: Path, data: Any) -> None:
    """Writes JSON atomically, NaN as null."""
    _atomic(path, lambda tmp: tmp.write_text(json.dumps(json_safe(data), indent=2, sort_keys=True)))


def part_path(run_dir: Path, kind: str, checkpoint_id: str) -> Path:
    """Where the part of one checkpoint lives (``kind``: records, checkpoint or failure)."""
    suffix = "parquet" if kind == "records" else "json"
    return run_dir / "parts" / f"{kind}-{checkpoint_id}.{suffix}"


def read_parts(run_dir: Path, kind: str) -> list[Path]:
    """Finished parts of one kind, sorted by name."""
    return sorted((run_dir / "parts").glob(f"{kind}-*"))


def combine(run_dir: Path) -> dict[str, pd.DataFrame]:
    """Builds the three tables from the parts and writes them; returns them."""
    records = [pd.read_parquet(p) for p in read_parts(run_dir, "records")]
    checkpoints, texts = [], []
    for p in read_parts(run_dir, "checkpoint") + read_parts(run_dir, "failure"):
        part = json.loads(p.read_text())
        checkpoints.append(part["checkpoint"])
        texts += part.get("cross_entropy", [])
    tables = {
        "records": pd.concat(records, ignore_index=True) if records else pd.DataFrame(),
        "checkpoints": pd.DataFrame(checkpoints),
        "cross_entropy": pd.DataFrame(texts),
    }
    if not tables["checkpoints"].empty and {"params", "step"} <= set(tables["checkpoints"]):
        tables["checkpoints"] = tables["checkpoints"].sort_values(["params", "step", "label"], na_position="last",
                                                                  kind="stable").reset_index(drop=True)
    for name, frame in tables.items():
        write_table(run_dir / f"{name}.parquet", frame)
    return tables


def load_run(run_dir: Path | str) -> dict[str, pd.DataFrame]:
    """Reads a run directory's tables, with a one-line error when it is not one."""
    run_dir = Path(run_dir)
    missing = [t for t in TABLES if not (run_dir / f"{t}.parquet").exists()]
    if not run_dir.is_dir() or missing:
        raise UserError(f"{run_dir} is not a finished run directory (missing {', '.join(missing) or 'folder'}); "
                        "pass a folder under results/ written by `emergence run`")
    return {t: pd.read_parquet(run_dir / f"{t}.parquet") for t in TABLES}
