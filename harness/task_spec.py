"""Task suites: small YAML files (data only) validated against a schema into frozen specs.

Two kinds of suite: ``composite`` (items from the composer, scored several ways) and
``cross_entropy`` (a text whose loss is measured: the catalog's held-out stream or a local corpus).
Validation collects every problem in a file, so one run of `emergence tasks validate` shows them all.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from skill_catalog.compose import CompositionSpec
from skill_catalog.errors import CatalogError, UserError
from skill_catalog.render import MODES, TEMPLATE_DIR
from skill_catalog.skill import get_skill, skill_sets

TASKS_DIR = Path(__file__).resolve().parent.parent / "tasks"
SCORING_MODES = ("exact_match", "partial_credit", "multiple_choice", "gold_logprob")


@dataclass(frozen=True)
class CompositeTask:
    """A composite-skill suite."""

    name: str
    """Suite name."""
    version: int
    """Suite version; bump it whenever the file changes what is measured."""
    composition: CompositionSpec
    """The items to compose."""
    scoring: tuple[str, ...]
    """Scoring modes, a subset of `SCORING_MODES`."""
    max_new_tokens: int
    """Generation budget per item for exact match and partial credit."""
    cross_entropy: str | None = None
    """A cross-entropy suite (file name under tasks/ or path) every run of this suite measures, so a run that
    names no corpus still relates competence to a measured loss; None: none."""


@dataclass(frozen=True)
class CrossEntropyTask:
    """A text whose cross-entropy is measured per checkpoint."""

    name: str
    """Suite name."""
    version: int
    """Suite version."""
    source: str
    """``"catalog"`` (the generator's held-out stream, exact entropy known) or a local path."""
    skill_set: str
    """Skill set of the catalog stream."""
    seed: int
    """Seed of the catalog stream."""
    pieces: int
    """Pieces of the catalog stream."""


Task = CompositeTask | CrossEntropyTask

_COMPOSITE_KEYS = {"name": str, "version": int, "kind": str, "skill_set": str, "skills": (list, str), "ks": list,
                   "modes": list, "items": dict, "shots": int, "choices": int, "scoring": list, "seed": int,
                   "split_seed": int, "template_version": str, "max_new_tokens": int, "description": str,
                   "cross_entropy": str}
_CE_KEYS = {"name": str, "version": int, "kind": str, "source": str, "skill_set": str, "seed": int, "pieces": int,
            "description": str}


def _type_problems(data: dict, schema: dict) -> list[str]:
    problems = [f"unknown key {key!r} (allowed: {', '.join(sorted(schema))})" for key in data if key not in schema]
    for key, want in schema.items():
        # YAML's true/false are bools, and bool is a subclass of int: never accept one as a number.
        if key in data and (not isinstance(data[key], want) or isinstance(data[key], bool)):
            names = " or ".join(t.__name__ for t in (want if isinstance(want, tuple) else (want,)))
            problems.append(f"{key!r} must be {names}, got {type(data[key]).__name__}")
    for key in ("name", "version", "kind"):
        if key not in data:
            problems.append(f"missing required key {key!r}")
    return problems


def _composite_problems(d: dict) -> list[str]:
    problems = []
    if d.get("skill_set") not in skill_sets():
        return [f"'skill_set' must be one of {', '.join(skill_sets())}"]
    names = d.get("skills", "all")
    if isinstance(names, list):
        if not names:
            problems.append("'skills' is empty; list at least one skill or write 'all'")
        for n in names:
            try:
                get_skill(d["skill_set"], str(n))
            except CatalogError as err:
                problems.append(str(err))
    elif names != "all":
        problems.append("'skills' must be a list of skill names or 'all'")
    if not all(isinstance(k, int) and k >= 1 for k in d.get("ks", [])) or not d.get("ks"):
        problems.append("'ks' must be a non-empty list of integers >= 1")
    problems += [f"unknown mode {m!r}; use chain, conjunction or direct" for m in d.get("modes", []) if m not in MODES or m == "single"]
    problems += [f"unknown scoring mode {m!r}; use {', '.join(SCORING_MODES)}" for m in d.get("scoring", []) if m not in SCORING_MODES]
    items = d.get("items", {})
    for key, value in items.items() if isinstance(items, dict) else []:
        if key not in ("single_per_skill", "per_cell"):
            problems.append(f"unknown key items.{key}; use single_per_skill and per_cell")
        elif not isinstance(value, int) or isinstance(value, bool) or value < 0:
            problems.append(f"items.{key} must be a non-negative integer, got {value!r}")
    for key in ("shots", "choices", "seed", "split_seed", "max_new_tokens"):
        if isinstance(d.get(key), int) and d[key] < (1 if key in ("choices", "max_new_tokens") else 0):
            problems.append(f"{key!r} must be >= {1 if key in ('choices', 'max_new_tokens') else 0}, got {d[key]}")
    corpus = d.get("cross_entropy")
    if isinstance(corpus, str) and not (Path(corpus).is_file() or (TASKS_DIR / corpus).is_file()):
        problems.append(f"'cross_entropy' names {corpus!r}, neither a file nor a suite under {TASKS_DIR}")
    version = d.get("template_version", "v1")
    if not list(TEMPLATE_DIR.glob(f"*.{version}.txt")):
        problems.append(f"no templates of version {version!r}")
    return problems


def validate(data: Any) -> list[str]:
    """Every problem of a parsed task file, as one-line messages (empty when valid)."""
    if not isinstance(data, dict):
        return ["the file must hold a YAML mapping (key: value lines)"]
    kind = data.get("kind")
    if kind not in ("composite", "cross_entropy"):
        return [f"'kind' must be 'composite' or 'cross_entropy', got {kind!r}"]
    schema = _COMPOSITE_KEYS if kind == "composite" else _CE_KEYS
    problems = _type_problems(data, schema)
    if problems:
        return problems
    if kind == "composite":
        return _composite_problems(data)
    if data.get("source", "catalog") == "catalog" and data.get("skill_set", "symbolic") not in skill_sets():
        return [f"'skill_set' must be one of {', '.join(skill_sets())}"]
    return [] if data.get("pieces", 1) >= 1 else ["'pieces' must be >= 1"]


def read_yaml(path: Path) -> Any:
    """Parses a YAML file with the safe loader; a syntax error becomes a one-line `UserError`."""
    if not path.exists():
        named = TASKS_DIR / path.name
        if named.exists():
            path = named
        else:
            raise UserError(f"task file {path} does not exist; pass a path or a name from {TASKS_DIR}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{path} is not valid YAML{where}; fix its syntax") from None


def from_dict(d: dict) -> Task:
    """Builds the frozen spec of a validated task mapping (defaults filled in)."""
    if d["kind"] == "cross_entropy":
        return CrossEntropyTask(d["name"], d["version"], d.get("source", "catalog"), d.get("skill_set", "symbolic"),
                                d.get("seed", 99_991), d.get("pieces", 1_000))
    items = d.get("items", {})
    skills = () if d.get("skills", "all") == "all" else tuple(d["skills"])
    spec = CompositionSpec(
        skill_set=d["skill_set"], skills=skills, ks=tuple(d.get("ks", (1, 2, 3, 4))),
        modes=tuple(d.get("modes", ("conjunction", "chain"))), items_per_cell=items.get("per_cell", 20),
        single_items_per_skill=items.get("single_per_skill", 20), n_shots=d.get("shots", 0),
        n_choices=d.get("choices", 4), seed=d.get("seed", 0), split_seed=d.get("split_seed", 0),
        template_version=d.get("template_version", "v1"),
    )
    return CompositeTask(d["name"], d["version"], spec, tuple(d.get("scoring", SCORING_MODES)),
                         d.get("max_new_tokens", 64), d.get("cross_entropy"))


def load_task(path: Path | str) -> Task:
    """Reads, validates and builds a task; any problem raises one `UserError` naming the first and the count."""
    path = Path(path)
    data = read_yaml(path)
    problems = validate(data)
    if problems:
        more = f" (and {len(problems) - 1} more; run `emergence tasks validate {path}`)" if len(problems) > 1 else ""
        raise UserError(f"{path}: {problems[0]}{more}")
    return from_dict(data)


def task_hash(task: Task) -> str:
    """Short content hash of a task spec (part of a run's identity)."""
    return hashlib.sha256(json.dumps(asdict(task), sort_keys=True, default=str).encode()).hexdigest()[:12]
