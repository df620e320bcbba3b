"""Gate policies: a small YAML file (data only) validated into frozen specs, like task files.

A policy lists stages in order (``basic``: k = 1 items; ``composite``: k > 1 cells; ``cross_entropy``:
the run's corpus cross-entropy). Each stage states its checks: an absolute floor on chance-corrected
competence and/or non-inferiority against the baseline within a margin.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.analysis.paired import Adjustment
from harness.run.task_files import read_yaml
from skill_catalog.errors import UserError

STAGE_KINDS = ("basic", "composite", "cross_entropy")
GROUPINGS = {"basic": ("skill", "family", "all"), "composite": ("k", "mode", "split")}


@dataclass(frozen=True)
class Stage:
    """One stage of a policy: which items form its checks and what each check asserts."""

    name: str
    """Stage name (shown in the verdict and as the JUnit test suite)."""
    kind: str
    """``basic``, ``composite`` or ``cross_entropy``."""
    by: tuple[str, ...]
    """Basic: ``skill``, ``family`` or ``all`` (one check per group); composite: cell keys among k, mode, split."""
    ks: tuple[int, ...] = ()
    """Composite only: the k to check (empty = every k > 1 in the run)."""
    floor: float | None = None
    """Chance-corrected competence the candidate must exceed with confidence 1 - alpha (None: no floor)."""
    margin: float | None = None
    """Non-inferiority margin on the success rate: candidate - baseline > -margin (None: no comparison)."""
    max_increase: float | None = None
    """Cross-entropy only: largest accepted relative increase of the candidate's nats per token."""


@dataclass(frozen=True)
class Policy:
    """A staged validation policy."""

    name: str
    """Policy name."""
    version: int
    """Policy version; bump it when the file changes a decision."""
    metric: str
    """Record metric the checks use (a 0/1 or [0, 1] metric, default exact_match)."""
    alpha: float
    """Level of every one-sided test (default 0.05)."""
    multiplicity: Adjustment
    """Adjustment across the checks of one stage: holm (default), bh, by or none."""
    power: float
    """Power at which "not decidable" states the items needed (default 0.8)."""
    tasks: tuple[str, ...]
    """Suites scored when the baseline and candidate are checkpoint folders."""
    stages: tuple[Stage, ...]
    """Stages in order; a stage runs only when the previous passed (unless --all-stages)."""


_POLICY_KEYS = {"name": str, "version": int, "metric": str, "alpha": float, "multiplicity": str, "power": float,
                "tasks": list, "stages": list, "description": str}
_STAGE_KEYS = {"name": str, "kind": str, "by": (list, str), "ks": list, "floor": float, "margin": float,
               "max_increase": float}


def _types(data: dict, schema: dict, where: str) -> list[str]:
    allowed = ", ".join(sorted(schema))
    problems = [f"{where}unknown key {key!r} (allowed: {allowed})" for key in data if key not in schema]
    for key, want in schema.items():
        want = (int, float) if want is float else want
        if key in data and (not isinstance(data[key], want) or isinstance(data[key], bool)):
            names = " or ".join(t.__name__ for t in (want if isinstance(want, tuple) else (want,)))
            problems.append(f"{where}{key!r} must be {names}, got {type(data[key]).__name__}")
    return problems


def _stage_problems(i: int, s: Any) -> list[str]:
    where = f"stages[{i}]: "
    if not isinstance(s, dict):
        return [f"{where}each stage must be a mapping (name:, kind:, ...)"]
    problems = _types(s, _STAGE_KEYS, where)
    if problems:
        return problems
    kind = s.get("kind")
    if kind not in STAGE_KINDS:
        return [f"{where}'kind' must be one of {', '.join(STAGE_KINDS)}, got {kind!r}"]
    if "name" not in s:
        problems.append(f"{where}missing required key 'name'")
    by = [s["by"]] if isinstance(s.get("by"), str) else s.get("by", [])
    if kind in GROUPINGS:
        problems += [f"{where}'by' value {b!r} is not one of {', '.join(GROUPINGS[kind])}" for b in by
                     if b not in GROUPINGS[kind]]
        if s.get("floor") is None and s.get("margin") is None:
            problems.append(f"{where}a {kind} stage needs 'floor' and/or 'margin'")
    elif s.get("max_increase") is None:
        problems.append(f"{where}a cross_entropy stage needs 'max_increase'")
    for key in ("floor", "margin", "max_increase"):
        if key in s and not 0 <= s[key] <= 1:
            problems.append(f"{where}{key!r} must be in [0, 1], got {s[key]}")
    if not all(isinstance(k, int) and not isinstance(k, bool) and k >= 2 for k in s.get("ks", [])):
        problems.append(f"{where}'ks' must be integers >= 2")
    return problems


def validate_policy(data: Any) -> list[str]:
    """Every problem of a parsed policy file, as one-line messages (empty when valid)."""
    if not isinstance(data, dict):
        return ["the file must hold a YAML mapping (key: value lines)"]
    problems = _types(data, _POLICY_KEYS, "")
    problems += [f"missing required key {key!r}" for key in ("name", "version", "stages") if key not in data]
    if problems:
        return problems
    if not data["stages"]:
        problems.append("'stages' is empty; list at least one stage")
    if data.get("multiplicity", "holm") not in ("holm", "bh", "by", "none"):
        problems.append(f"'multiplicity' must be holm, bh, by or none, got {data['multiplicity']!r}")
    if not 0 < data.get("alpha", 0.05) < 0.5:
        problems.append(f"'alpha' must be in (0, 0.5), got {data['alpha']}")
    if not 0.5 <= data.get("power", 0.8) < 1:
        problems.append(f"'power' must be in [0.5, 1), got {data['power']}")
    names = [s.get("name") for s in data["stages"] if isinstance(s, dict)]
    if len(set(names)) < len(names):
        problems.append("stage names must be unique")
    for i, stage in enumerate(data["stages"]):
        problems += _stage_problems(i, stage)
    return problems


def policy_from_dict(d: dict) -> Policy:
    """Builds the frozen policy of a validated mapping (defaults filled in)."""
    stages = []
    for s in d["stages"]:
        by = (s["by"],) if isinstance(s.get("by"), str) else tuple(s.get("by", ()))
        default = {"basic": ("skill",), "composite": ("k", "mode")}.get(s["kind"], ())
        stages.append(Stage(s["name"], s["kind"], by or default, tuple(s.get("ks", ())), s.get("floor"),
                            s.get("margin"), s.get("max_increase")))
    tasks = tuple(d.get("tasks", ("symbolic_v2_composite.yaml",)))  # the shipped family's suites by default
    if any(s.kind == "cross_entropy" for s in stages) and "tasks" not in d:
        tasks += ("symbolic_v2_heldout_text.yaml",)
    return Policy(d["name"], d["version"], d.get("metric", "exact_match"), float(d.get("alpha", 0.05)),
                  d.get("multiplicity", "holm"), float(d.get("power", 0.8)), tasks, tuple(stages))


def load_policy(path: Path | str) -> Policy:
    """Reads (safe loader), validates and builds a policy; any problem raises one `UserError`."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"policy file {path} does not exist")
    data = read_yaml(path)
    problems = validate_policy(data)
    if problems:
        more = f" (and {len(problems) - 1} more: {'; '.join(problems[1:4])})" if len(problems) > 1 else ""
        raise UserError(f"{path}: {problems[0]}{more}")
    return policy_from_dict(data)
