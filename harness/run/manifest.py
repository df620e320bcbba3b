"""The run manifest (``manifest.json``) and the summary table printed at the end of a run."""
from __future__ import annotations

import datetime as dt
import math
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

import pandas as pd

from harness.checkpoints.discovery import find_duplicate_weights
from harness.storage.run_files import write_json
from harness.run.task_files import task_hash

PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "numpy", "pandas", "pyarrow", "scipy", "accelerate")


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of the packages that can change a number (None when not installed)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _git(*args: str) -> str | None:
    """Output of a git command in the harness checkout, or None outside one."""
    root = Path(__file__).resolve().parents[2]
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit() -> str | None:
    """Commit of the harness checkout, or None outside a git checkout."""
    return _git("rev-parse", "HEAD") or None


def git_dirty() -> bool | None:
    """Whether tracked files of the checkout differ from its commit (the commit alone does not say what ran);
    committed benchmark results are not code and do not count."""
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)benchmarks/results")
    return None if status is None else bool(status)


def write_manifest(plan, tables: dict[str, pd.DataFrame], started: float, failures: list[str]) -> Path:
    """Writes ``manifest.json``: configuration, versions, commit, seeds, identities, timings, drift."""
    ckpts = tables["checkpoints"]
    manifest = {
        "run_id": plan.run_dir.name,
        "config": plan.config.to_dict(),
        "allow_pickle": plan.config.allow_pickle,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": time.time() - started,
        "packages": package_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "tasks": [{"name": t.name, "version": t.version, "hash": task_hash(t),
                   "seed": getattr(getattr(t, "composition", None), "seed", getattr(t, "seed", None)),
                   "n_items": len(plan.items.get(t.name, ()))} for t in plan.tasks],
        "checkpoints": ckpts.to_dict(orient="records") if not ckpts.empty else [],
        "failures": failures,
        "duplicate_weights": find_duplicate_weights([m.checkpoint for m in plan.members]),
        "n_records": int(len(tables["records"])),
    }
    path = plan.run_dir / "manifest.json"
    write_json(path, manifest)
    return path


def summary_table(tables: dict[str, pd.DataFrame], metric: str = "exact_match") -> str:
    """Checkpoint, parameters, cross-entropy and accuracy per k, as aligned text."""
    ckpts, records = tables["checkpoints"], tables["records"]
    if ckpts.empty:
        return "(no checkpoints)"
    view = ckpts[["checkpoint_id", "label", "params"]].copy()
    view["CE"] = ckpts["ce_nats_sum"] / ckpts["ce_tokens"].where(ckpts["ce_tokens"] > 0)
    view["bits/byte"] = ckpts["ce_nats_sum"] / ckpts["ce_bytes"].where(ckpts["ce_bytes"] > 0) / math.log(2)
    view["floor"] = ckpts.get("entropy_floor")
    if not records.empty and metric in set(records["metric"]):
        acc = (records[records["metric"] == metric].groupby(["checkpoint_id", "k"])["value"].mean()
               .unstack("k").add_prefix(f"{metric} k="))
        view = view.merge(acc, left_on="checkpoint_id", right_index=True, how="left")
    view = view.drop(columns="checkpoint_id")
    return view.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="NaN")
