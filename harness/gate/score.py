"""Scores a baseline and a candidate checkpoint folder on a policy's suites, through the runner and its cache."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from harness.offline import enforce_offline
from harness.run_config import RunConfig, run_id
from harness.run_manifest import write_manifest
from harness.runner import execute, plan_run
from harness.store import combine
from harness.task_spec import task_hash
from skill_catalog.errors import UserError


def score_pair(baseline: str, candidate: str, tasks: tuple[str, ...], out: str,
               device: str = "auto") -> tuple[Path, str, str]:
    """Scores exactly the two checkpoints the paths name (a folder's own weights, not its step subfolders).

    Returns:
        (run directory, baseline checkpoint id, candidate checkpoint id).

    Raises:
        UserError: a path names no checkpoint of its own, the two have identical weights, or scoring failed.
    """
    enforce_offline()
    started = time.time()
    config = RunConfig(family=(baseline, candidate), tasks=tasks, out=out, analyze=False, device=device)
    plan = plan_run(config)
    if plan.unresolved:
        raise UserError(f"{plan.unresolved[0].label}: {plan.unresolved[0].error}")
    chosen = []
    for path in (baseline, candidate):
        want = Path(path).expanduser().resolve()
        own = [m for m in plan.members if m.checkpoint.path == want]
        inside = [m for m in plan.members if m.checkpoint.path.is_relative_to(want)]
        if len(own) != 1 and len(inside) != 1:
            raise UserError(f"{path}: holds {len(inside)} checkpoints and no weights of its own; pass one checkpoint")
        chosen.append((own or inside)[0])
    if chosen[0].checkpoint.checkpoint_id == chosen[1].checkpoint.checkpoint_id:
        raise UserError(f"{baseline} and {candidate} have byte-identical weights; nothing to compare")
    ids = [m.checkpoint.checkpoint_id for m in chosen]
    rid = run_id(config, ids, [task_hash(t) for t in plan.tasks])
    plan = replace(plan, members=tuple(chosen), unresolved=(), run_dir=Path(out) / rid)
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    failures = execute(plan)
    write_manifest(plan, combine(plan.run_dir), started, failures)
    if failures:
        raise UserError(f"scoring failed: {failures[0]}")
    return plan.run_dir, ids[0], ids[1]
