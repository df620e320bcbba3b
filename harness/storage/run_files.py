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
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from harness.records import CHECKPOINT_COLUMNS, RECORD_COLUMNS, normalize_skills, with_schema
from skill_catalog.errors import UserError

TABLES = ("records", "checkpoints", "cross_entropy")


_HOST = socket.gethostname()
_ORPHAN = re.compile(r"^\..+\.tmp-(?P<host>.+)-(?P<pid>\d+)-[^-]*$")


def temp_prefix(path: Path) -> str:
    """Name prefix of a temporary file or folder that will become `path`: hidden, and naming its writer
    (host and process id), so `remove_orphans` can tell one left by a killed writer from one in flight."""
    return f".{path.name}.tmp-{_HOST}-{os.getpid()}-"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: Path, write) -> None:
    """Calls ``write(tmp)`` on a temporary file next to `path`, then renames it onto `path` in one step.

    The file gets the permissions any other output gets (0666 less the umask: group-readable by
    default), not the 0600 of a private temporary file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _alive(host: str, pid: int) -> bool:
    if host != _HOST:
        return True  # another machine's writer (shared file system): never ours to judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def remove_orphans(folder: Path) -> int:
    """Deletes temporary files and folders in `folder` left by writers that were killed.

    Returns:
        How many were removed.
    """
    removed = 0
    for entry in Path(folder).glob(".*.tmp-*") if Path(folder).is_dir() else ():
        match = _ORPHAN.match(entry.name)
        if match and not _alive(match["host"], int(match["pid"])):
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
            removed += 1
    return removed


def temp_folder(final: Path) -> Path:
    """A new empty folder next to `final`, to be filled and then put in place with `replace_folder`."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=temp_prefix(final), dir=final.parent))
    os.chmod(staged, 0o777 & ~_umask())
    return staged


def replace_folder(staged: Path, final: Path) -> None:
    """Puts the complete folder `staged` in place of `final` (two renames; the old one is then deleted)."""
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=temp_prefix(final), dir=final.parent))
        os.replace(final, old / final.name)
    os.replace(staged, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_table(path: Path, rows: list[dict] | pd.DataFrame) -> None:
    """Writes a Parquet table atomically (a reader never sees half a file)."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))


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
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(json_safe(data), indent=2, sort_keys=True)))


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
        "records": with_schema(pd.concat(records, ignore_index=True) if records else pd.DataFrame(), RECORD_COLUMNS),
        "checkpoints": with_schema(pd.DataFrame(checkpoints), CHECKPOINT_COLUMNS),
        "cross_entropy": pd.DataFrame(texts),
    }
    if not tables["checkpoints"].empty:
        tables["checkpoints"] = tables["checkpoints"].sort_values(["params", "step", "label"], na_position="last",
                                                                  kind="stable").reset_index(drop=True)
    for name, frame in tables.items():
        write_table(run_dir / f"{name}.parquet", frame)
    return {**tables, "records": normalize_skills(tables["records"])}


def load_run(run_dir: Path | str) -> dict[str, pd.DataFrame]:
    """Reads a run directory's tables, with a one-line error when it is not one.

    The records' ``skills`` (a Parquet list column) come back as tuples, so they can be grouped on; the
    checkpoints table, and a records table without rows, have every column of the schema
    (`records.CheckpointRow`, `records.Record`), NaN where a run written before a column existed lacks it.
    """
    run_dir = Path(run_dir)
    missing = [t for t in TABLES if not (run_dir / f"{t}.parquet").exists()]
    if not run_dir.is_dir() or missing:
        raise UserError(f"{run_dir} is not a finished run directory (missing {', '.join(missing) or 'folder'}); "
                        "pass a folder under results/ written by `emergence run`")
    tables = {t: read_table(run_dir / f"{t}.parquet") for t in TABLES}
    records = tables["records"]
    records = normalize_skills(records) if len(records) else with_schema(records, RECORD_COLUMNS)
    return {**tables, "records": records, "checkpoints": with_schema(tables["checkpoints"], CHECKPOINT_COLUMNS)}


def read_table(path: Path) -> pd.DataFrame:
    """Reads one Parquet table, with a one-line error when it is truncated or not Parquet.

    Raises:
        UserError: naming the file and how to rebuild it.
    """
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{path}: unreadable table ({first}); fix: rerun the same `emergence run` command, which "
                        "rebuilds the tables from the run's parts/ (or `emergence analyze` for analysis tables)") from None
