"""The `Skill` abstraction: an atomic skill as data plus one exact answer function and checker.

Skills live in one registry per skill set, filled by the `skill` decorator, which refuses duplicates.
Values are plain strings everywhere, so every skill composes with text templates and tokenizers.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

from skill_catalog.errors import CatalogError

Sampler = Callable[[random.Random], str]
Normalizer = Callable[[str], str]
DistractorFn = Callable[[str, str, random.Random, int], tuple[str, ...]]


@dataclass(frozen=True)
class ValueType:
    """A named kind of value a skill consumes or produces (e.g. a 4-letter word, a small number)."""

    name: str
    """Unique name, e.g. ``"word4"`` or ``"country"``."""
    sample: Sampler
    """Draws one value uniformly (or from a documented distribution) with the given RNG."""
    parent: str | None = None
    """A broader type this one is also an instance of (a ``"country"`` is a ``"word"``)."""
    support_size: int | None = None
    """Number of distinct values `sample` can return with equal probability, when that is exact."""


@dataclass(frozen=True)
class Skill:
    """One atomic skill of a skill set."""

    name: str
    """Unique name within its skill set; also the registry key."""
    skill_set: str
    """``"symbolic"`` or ``"natural"``."""
    family: str
    """Group of related skills (``"positional"``, ``"arithmetic"``, ...)."""
    instruction: str
    """Natural-language instruction with one ``{x}`` field for the input (a quoted value or a phrase)."""
    tag: str
    """Compact name used in training text; a single token for the symbolic set."""
    input_type: str
    """Name of the `ValueType` this skill reads."""
    output_type: str
    """Name of the `ValueType` this skill writes."""
    apply: Callable[[str], str]
    """The exact function computing the gold answer from an input."""
    normalize: Normalizer = field(default=str.strip)
    """Maps a raw answer to its canonical form before comparison."""
    distractor_fn: DistractorFn | None = None
    """Optional custom generator of plausible wrong answers: ``(input, gold, rng, n) -> answers``."""
    description: str = ""
    """One line for people: what the skill does."""

    def check(self, prediction: str, gold: str) -> bool:
        """True when the prediction equals the gold answer after normalization."""
        return self.normalize(prediction) == self.normalize(gold)

    def sample_input(self, rng: random.Random) -> str:
        """Draws one input of this skill's input type."""
        return value_type(self.input_type).sample(rng)


_TYPES: dict[str, ValueType] = {}
_SKILLS: dict[str, dict[str, Skill]] = {}


def register_type(vtype: ValueType) -> ValueType:
    """Adds a value type to the catalog; raises on a duplicate name."""
    if vtype.name in _TYPES:
        raise CatalogError(f"value type {vtype.name!r} is registered twice; rename one of them")
    if vtype.parent is not None and vtype.parent not in _TYPES:
        raise CatalogError(f"value type {vtype.name!r} names unknown parent {vtype.parent!r}; register the parent first")
    _TYPES[vtype.name] = vtype
    return vtype


def value_type(name: str) -> ValueType:
    """Looks up a registered value type by name."""
    try:
        return _TYPES[name]
    except KeyError:
        raise CatalogError(f"unknown value type {name!r}; known: {', '.join(sorted(_TYPES))}") from None


def is_subtype(child: str, parent: str) -> bool:
    """True when a value of type `child` may be fed where `parent` is expected."""
    current: str | None = child
    while current is not None:
        if current == parent:
            return True
        current = _TYPES[current].parent if current in _TYPES else None
    return False


def register(skill_obj: Skill) -> Skill:
    """Adds a skill to its set's registry; raises on a duplicate name or an unknown type."""
    bucket = _SKILLS.setdefault(skill_obj.skill_set, {})
    if skill_obj.name in bucket:
        raise CatalogError(f"skill {skill_obj.name!r} is registered twice in set {skill_obj.skill_set!r}; rename one")
    value_type(skill_obj.input_type)
    value_type(skill_obj.output_type)
    bucket[skill_obj.name] = skill_obj
    return skill_obj


def skill(
    *,
    skill_set: str,
    family: str,
    instruction: str,
    input_type: str,
    output_type: str,
    tag: str | None = None,
    normalize: Normalizer = str.strip,
    distractors: DistractorFn | None = None,
    name: str | None = None,
) -> Callable[[Callable[[str], str]], Skill]:
    """Decorator turning an answer function into a registered `Skill` (name = function name)."""

    def wrap(fn: Callable[[str], str]) -> Skill:
        skill_name = name or fn.__name__
        return register(
            Skill(
                name=skill_name,
                skill_set=skill_set,
                family=family,
                instruction=instruction,
                tag=tag or skill_name,
                input_type=input_type,
                output_type=output_type,
                apply=fn,
                normalize=normalize,
                distractor_fn=distractors,
                description=(fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else "",
            )
        )

    return wrap


def _load_sets() -> None:
    # Importing the set modules fills the registry; done lazily to avoid import cycles.
    import skill_catalog.natural  # noqa: F401
    import skill_catalog.symbolic  # noqa: F401
    import skill_catalog.symbolic_v2  # noqa: F401


def skill_sets() -> tuple[str, ...]:
    """Names of all registered skill sets."""
    _load_sets()
    return tuple(sorted(_SKILLS))


def skills(skill_set: str) -> tuple[Skill, ...]:
    """All skills of one set, in registration order."""
    _load_sets()
    if skill_set not in _SKILLS:
        raise CatalogError(f"unknown skill set {skill_set!r}; use one of: {', '.join(sorted(_SKILLS))}")
    return tuple(_SKILLS[skill_set].values())


def get_skill(skill_set: str, name: str) -> Skill:
    """The one lookup function: a skill by set and name."""
    by_name = {s.name: s for s in skills(skill_set)}
    if name not in by_name:
        raise CatalogError(
            f"unknown skill {name!r} in set {skill_set!r}; run `emergence catalog --set {skill_set}` to list them"
        )
    return by_name[name]


def distractors(skill_obj: Skill, x: str, rng: random.Random, n: int) -> tuple[str, ...]:
    """Up to `n` distinct plausible wrong answers for input `x`, each rejected by the checker.

    Custom generators come first; then answers of sibling skills (same input and output types) on
    the same input, then this skill's answers on other inputs. Deterministic given `rng`.
    """
    gold = skill_obj.apply(x)
    seen = {skill_obj.normalize(gold)}
    out: list[str] = []

    def offer(candidate: str) -> None:
        key = skill_obj.normalize(candidate)
        if key and key not in seen and len(out) < n:
            seen.add(key)
            out.append(candidate)

    if skill_obj.distractor_fn is not None:
        for cand in skill_obj.distractor_fn(x, gold, rng, n):
            offer(cand)
    siblings = [
        s for s in skills(skill_obj.skill_set)
        if s.name != skill_obj.name and s.input_type == skill_obj.input_type and s.output_type == skill_obj.output_type
    ]
    rng.shuffle(siblings)
    for sib in siblings:
        offer(sib.apply(x))
    for _ in range(20 * n):
        if len(out) >= n:
            break
        offer(skill_obj.apply(skill_obj.sample_input(rng)))
    return tuple(out)
