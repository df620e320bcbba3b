"""Scores a baseline and a candidate checkpoint folder on a policy's suites, through the runner and its cache.

When the run of exactly these two checkpoints on these suites is already complete, nothing is loaded
(not even torch), so a repeated gate takes seconds.
"""
from __future__ import annotations

import time
from pathlib import Path

from harness.storage.result_cache import default_cache_dir
from harness.checkpoints.family import Member, resolve_family
from harness.run.config import RunConfig, run_id
from harness.storage.run_files import part_path
from harness.run.task_files import load_task, task_hash
from skill_catalog.errors import UserError


def _pick(members: tuple[Member, ...], path: str) -> Member:
    """The one checkpoint a path names: its own weights, else its only checkpoint."""
    want = Path(path).expanduser().resolve()
    own = [m for m in members if m.checkpoint.path == want]
    inside = [m for m in members if m.checkpoint.path.is_relative_to(want)]
    if len(own) != 1 and len(inside) != 1:
        raise UserError(f"{path}: holds {len(inside)} checkpoints and no weights of its own; pass one checkpoint")
    return (own or inside)[0]


def score_pair(baseline: str, candidate: str, tasks: tuple[str, ...], out: str,
               device: str = "auto") -> tuple[Path, str, str]:
    """Scores exactly the two checkpoints the paths name (a folder's own weights, not its step subfolders).

    Returns:
        (run directory, baseline checkpoint id, candidate checkpoint id).

    Raises:
        UserError: a path names no checkpoint of its own, the two have identical weights, or scoring failed.
    """
    started = time.time()
    config = RunConfig(family=(baseline, candidate), tasks=tasks, out=out, analyze=False, device=device)
    cache = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    members, unresolved = resolve_family(config.family, hash_cache=cache / "weight-hashes.json")
    if unresolved:
        raise UserError(f"{unresolved[0].label}: {unresolved[0].error}")
    chosen = (_pick(members, baseline), _pick(members, candidate))
    ids = [m.checkpoint.checkpoint_id for m in chosen]
    if ids[0] == ids[1]:
        raise UserError(f"{baseline} and {candidate} have byte-identical weights; nothing to compare")
    loaded = tuple(load_task(t) for t in tasks)
    run_dir = Path(out) / run_id(config, ids, [task_hash(t) for t in loaded])
    done = (run_dir / "manifest.json").exists() and all(part_path(run_dir, "checkpoint", i).exists() for i in ids)
    if not done:
        _score(config, chosen, run_dir, started)
    return run_dir, ids[0], ids[1]


def _score(config: RunConfig, chosen: tuple[Member, ...], run_dir: Path, started: float) -> None:
    """Runs the runner's loop on the two members and writes the run's tables and manifest."""
    from dataclasses import replace

    from harness.offline import enforce_offline
    from harness.run.manifest import write_manifest
    from harness.run.runner import execute, plan_run
    from harness.storage.run_files import combine

    enforce_offline()
    plan = replace(plan_run(replace(config, family=tuple(str(m.checkpoint.path) for m in chosen))),
                   members=chosen, unresolved=(), run_dir=run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    failures = execute(plan)
    write_manifest(plan, combine(run_dir), started, failures)
    if failures:
        raise UserError(f"scoring failed: {failures[0]}")
