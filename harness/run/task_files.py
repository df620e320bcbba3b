"""Task suites: small YAML files (data only) validated against a schema into frozen specs.

Two kinds of suite: ``composite`` (items from the composer, scored several ways) and
``cross_entropy`` (a text whose loss is measured: the catalog's held-out stream or a local corpus).
Validation collects every problem in a file, so one run of `emergence tasks validate` shows them all.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from harness.records import SCORING_MODES, SINGLE_MODE
from harness.safe_yaml import read_yaml_bounded
from skill_catalog.compose import CompositionSpec, compose_items
from skill_catalog.errors import CatalogError, UserError
from skill_catalog.heldout import SPLIT_RULES
from skill_catalog.training_text import text_spec_for
from skill_catalog.render import MODES, TEMPLATE_DIR
from skill_catalog.skill import get_skill, skill_sets

TASKS_DIR = Path(__file__).resolve().parents[2] / "tasks"


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
                   "modes": list, "items": dict, "shots": (int, list), "choices": int, "scoring": list, "seed": int,
                   "split_seed": int, "template_version": str, "max_new_tokens": int, "description": str,
                   "cross_entropy": str, "split_rule": str}
_CE_KEYS = {"name": str, "version": int, "kind": str, "source": str, "skill_set": str, "seed": int, "pieces": int,
            "description": str}


CAPS = {"shots": 32, "choices": 16, "max_new_tokens": 1024, "pieces": 100_000, "version": 2**31 - 1,
        "seed": 2**63 - 1, "split_seed": 2**63 - 1, "items.per_cell": 5_000, "items.single_per_skill": 1_000}
"""Largest value of each number: a run's time and memory must not depend on a task file beyond these."""
TEXT_CAPS = {"name": 100, "description": 2_000, "template_version": 20, "source": 4_096, "kind": 20,
             "skill_set": 20}
"""Longest text of each string field, in characters."""
LIST_CAPS = {"skills": 100, "ks": 8, "modes": 3, "scoring": len(SCORING_MODES)}
"""Longest list of each list field."""


def _cap_problems(data: dict) -> list[str]:
    """Every value over its cap, with the cap in the message (checked before anything is expanded or built)."""
    problems = []
    items = data.get("items") if isinstance(data.get("items"), dict) else {}
    numbers = {**{k: data.get(k) for k in CAPS}, **{f"items.{k}": v for k, v in items.items()}}
    for key, value in numbers.items():
        if key in CAPS and isinstance(value, int) and not isinstance(value, bool) and value > CAPS[key]:
            problems.append(f"{key!r} is {value}; the most allowed is {CAPS[key]}")
    for key, cap in TEXT_CAPS.items():
        if isinstance(data.get(key), str) and len(data[key]) > cap:
            problems.append(f"{key!r} has {len(data[key])} characters; the most allowed is {cap}")
    for key, cap in LIST_CAPS.items():
        if isinstance(data.get(key), list) and len(data[key]) > cap:
            problems.append(f"{key!r} lists {len(data[key])} values; the most allowed is {cap}")
    for key in ("skills", "ks", "modes", "scoring"):
        value = data.get(key)
        if isinstance(value, list) and any(isinstance(v, (list, dict)) or (isinstance(v, str) and len(v) > 100)
                                           for v in value):
            problems.append(f"{key!r} must list plain names or numbers")
    return problems


def _type_problems(data: dict, schema: dict) -> list[str]:
    problems = [f"unknown key {_short(key)} (allowed: {', '.join(sorted(schema))})" for key in data if key not in schema]
    for key, want in schema.items():
        # YAML's true/false are bools, and bool is a subclass of int: never accept one as a number.
        if key in data and (not isinstance(data[key], want) or isinstance(data[key], bool)):
            names = " or ".join(t.__name__ for t in (want if isinstance(want, tuple) else (want,)))
            problems.append(f"{key!r} must be {names}, got {type(data[key]).__name__}")
    for key in ("name", "version", "kind"):
        if key not in data:
            problems.append(f"missing required key {key!r}")
    return problems


def _short(value: Any, limit: int = 60) -> str:
    """`repr` of a user's value cut to `limit` characters (a message never grows with the input)."""
    text = repr(value) if isinstance(value, (str, int, float, bool)) or value is None else f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


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
            except (CatalogError, TypeError, ValueError) as err:
                problems.append(str(err)[:200])
    elif names != "all":
        problems.append("'skills' must be a list of skill names or 'all'")
    if not all(isinstance(k, int) and k >= 1 for k in d.get("ks", [])) or not d.get("ks"):
        problems.append("'ks' must be a non-empty list of integers >= 1")
    problems += [f"unknown mode {_short(m)}; use chain, conjunction or direct" for m in d.get("modes", [])
                 if m not in MODES or m == SINGLE_MODE]
    problems += [f"unknown scoring mode {_short(m)}; use {', '.join(SCORING_MODES)}" for m in d.get("scoring", [])
                 if m not in SCORING_MODES]
    items = d.get("items", {})
    for key, value in items.items() if isinstance(items, dict) else []:
        if key not in ("single_per_skill", "per_cell"):
            problems.append(f"unknown key items.{_short(key)}; use single_per_skill and per_cell")
        elif not isinstance(value, int) or isinstance(value, bool) or value < 0:
            problems.append(f"items.{key} must be a non-negative integer, got {_short(value)}")
    shots = d.get("shots", 0)
    if isinstance(shots, list) and (not shots or len(shots) > LIST_CAPS["ks"] or not all(
            isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= CAPS["shots"] for n in shots)):
        problems.append(f"'shots' must be an integer or a list of 1-{LIST_CAPS['ks']} integers in 0..{CAPS['shots']}")
    if d.get("split_rule", "per_k") not in SPLIT_RULES:
        problems.append(f"'split_rule' must be one of {', '.join(SPLIT_RULES)}")
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


def corpus_path(source: str) -> Path:
    """The path a corpus source names: as given (relative to the current folder), else under tasks/ (where
    the shipped corpora live, e.g. ``corpora/english``)."""
    path = Path(source).expanduser()
    shipped = TASKS_DIR / source
    return shipped if not path.exists() and not path.is_absolute() and shipped.exists() else path


def validate(data: Any) -> list[str]:
    """Every problem of a parsed task file, as one-line messages (empty when valid)."""
    if not isinstance(data, dict):
        return ["the file must hold a YAML mapping (key: value lines)"]
    kind = data.get("kind")
    if kind not in ("composite", "cross_entropy"):
        return [f"'kind' must be 'composite' or 'cross_entropy', got {_short(kind)}"]
    schema = _COMPOSITE_KEYS if kind == "composite" else _CE_KEYS
    problems = _type_problems(data, schema) + _cap_problems(data)
    if problems:
        return problems
    if kind == "composite":
        problems = _composite_problems(data)
        return problems or _composition_problems(data)
    if data.get("source", "catalog") == "catalog" and data.get("skill_set", "symbolic") not in skill_sets():
        return [f"'skill_set' must be one of {', '.join(skill_sets())}"]
    if data.get("source", "catalog") != "catalog" and not corpus_path(data["source"]).exists():
        return [f"cross-entropy source {_short(data['source'])} does not exist; use 'catalog' or a local path"]
    return [] if data.get("pieces", 1) >= 1 else ["'pieces' must be >= 1"]


def _composition_problems(data: dict) -> list[str]:
    """What `run` would refuse while composing: one item of every cell is composed here, so `tasks validate`
    catches an impossible k, a repeated skill or a cell with no valid tuple before a run starts."""
    spec = from_dict(data).composition
    sample = replace(spec, items_per_cell=min(spec.items_per_cell, 1),
                     single_items_per_skill=min(spec.single_items_per_skill, 1))
    try:
        for _ in compose_items(sample):
            pass
    except CatalogError as err:
        return [str(err)]
    return []


def read_yaml(path: Path) -> Any:
    """Parses a task file with the safe loader within `harness.safe_yaml`'s caps; any problem is a one-line `UserError`."""
    if not path.exists():
        named = TASKS_DIR / path.name
        if named.exists():
            path = named
        else:
            raise UserError(f"task file {path} does not exist; pass a path or a name from {TASKS_DIR}")
    return read_yaml_bounded(path)


def from_dict(d: dict) -> Task:
    """Builds the frozen spec of a validated task mapping (defaults filled in)."""
    if d["kind"] == "cross_entropy":
        return CrossEntropyTask(d["name"], d["version"], d.get("source", "catalog"), d.get("skill_set", "symbolic"),
                                d.get("seed", 99_991), d.get("pieces", 1_000))
    items = d.get("items", {})
    skills = () if d.get("skills", "all") == "all" else tuple(d["skills"])
    shots = d.get("shots", 0)
    spec = CompositionSpec(
        skill_set=d["skill_set"], skills=skills, ks=tuple(d.get("ks", (1, 2, 3, 4))),
        modes=tuple(d.get("modes", ("conjunction", "chain"))), items_per_cell=items.get("per_cell", 20),
        single_items_per_skill=items.get("single_per_skill", 20),
        n_shots=shots[0] if isinstance(shots, list) else shots, shots_axis=tuple(shots) if isinstance(shots, list) else (),
        n_choices=d.get("choices", 4), seed=d.get("seed", 0), split_seed=d.get("split_seed", 0),
        template_version=d.get("template_version", "v1"),
        split_rule=d.get("split_rule", text_spec_for(d["skill_set"]).split_rule),
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


V1_COMPOSITION_DEFAULTS = {"split_rule": "per_k", "shots_axis": ()}
"""Composition fields added for v2 with their v1 values: left out of the hash so v1 run identities never change."""


def task_hash(task: Task) -> str:
    """Short content hash of a task spec (part of a run's identity)."""
    fields = asdict(task)
    if isinstance(task, CompositeTask):
        fields["composition"] = {k: v for k, v in fields["composition"].items()
                                 if not (k in V1_COMPOSITION_DEFAULTS and v == V1_COMPOSITION_DEFAULTS[k])}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:12]
