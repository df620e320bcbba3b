"""The seeded composer: mixes k skills into composite `Item`s (a pure function of its spec).

Every item draws from its own RNG derived from (seed, k, mode, split, index), never from global
state, so items are byte-identical across machines and runs and any item can be rebuilt alone.
An item's id is a content hash of everything a model sees and is graded on.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import asdict, dataclass, replace
from typing import Iterator, Sequence

from skill_catalog.errors import CatalogError
from skill_catalog.heldout import family_groups, split_of
from skill_catalog.render import TEMPLATE_VERSION, Rendering, answer_text, chain_values, layout, render
from skill_catalog.skill import Skill, distractors, get_skill, is_subtype, skills

MAX_DRAWS = 5_000
"""Attempts to draw a tuple of the wanted split (or inputs valid along a chain) before giving up."""


@dataclass(frozen=True)
class CompositionSpec:
    """What to compose: the grid of (k, mode, split) cells and how many items each holds."""

    skill_set: str
    """``"symbolic"`` or ``"natural"``."""
    skills: tuple[str, ...] = ()
    """Skill names to draw from; empty means every skill of the set."""
    ks: tuple[int, ...] = (1, 2, 3, 4)
    """Tuple sizes; k = 1 gives single-skill items."""
    modes: tuple[str, ...] = ("conjunction", "chain")
    """Composite modes used for k >= 2."""
    items_per_cell: int = 20
    """Items per (k >= 2, mode, split) cell."""
    single_items_per_skill: int = 20
    """Items per skill at k = 1."""
    n_shots: int = 0
    """Solved exemplars before each query (shared by every item of a (k, mode) cell)."""
    n_choices: int = 4
    """Multiple-choice options per item: the gold plus n_choices - 1 answers with one skill broken."""
    seed: int = 0
    """Seed of the items (inputs, tuples, exemplars, choices)."""
    split_seed: int = 0
    """Seed of the seen/held-out split; must equal the training text's split seed."""
    template_version: str = TEMPLATE_VERSION
    """Version of the prompt templates."""
    split_rule: str = "per_k"
    """Rule of the seen/held-out split (`skill_catalog.heldout`); must equal the training text's rule."""
    shots_axis: tuple[int, ...] = ()
    """When not empty, every cell is composed once per shot count listed (same queries, more exemplars),
    overriding `n_shots`."""


@dataclass(frozen=True)
class Item:
    """One composite prompt with its gold answer."""

    item_id: str
    """Content hash (16 hex chars) of everything shown to and graded on a model."""
    skill_set: str
    """The skill set the skills come from."""
    skills: tuple[str, ...]
    """Skill names in application (chain) or question (conjunction) order."""
    k: int
    """Number of skills."""
    mode: str
    """``"single"``, ``"chain"``, ``"conjunction"`` or ``"direct"``."""
    split: str
    """``"single"`` (k = 1), ``"seen"`` or ``"heldout"`` (never together in training text)."""
    inputs: tuple[str, ...]
    """One input (single/chain/direct) or one per skill (conjunction)."""
    prompt: str
    """Full context: prompt prefix, exemplars, then the query."""
    answer: str
    """Gold continuation (with the answer prefix, without the stop string)."""
    part_answers: tuple[str, ...]
    """Gold answer of every part, for partial credit."""
    choices: tuple[str, ...]
    """Continuations for multiple choice: gold and answers with one skill broken."""
    gold_index: int
    """Position of the gold answer in `choices`."""
    stop: str
    """String that ends an answer."""
    n_shots: int
    """Number of exemplars in the prompt."""
    template_version: str
    """Version of the templates the prompt was rendered with."""
    seed: int
    """Item seed of the spec."""
    index: int
    """Index of the item within its cell."""


def _rng(*parts: object) -> random.Random:
    # String seeds are hashed with SHA-512 by `random`, identical on every platform.
    return random.Random("|".join(str(p) for p in parts))


def _pool(spec: CompositionSpec) -> tuple[Skill, ...]:
    if not spec.skills:
        return skills(spec.skill_set)
    if len(set(spec.skills)) != len(spec.skills):
        raise CatalogError("the skill list repeats a name; list each skill once")
    return tuple(get_skill(spec.skill_set, name) for name in spec.skills)


def _draw_chain(pool: Sequence[Skill], k: int, rng: random.Random) -> tuple[Skill, ...] | None:
    """A type-valid ordered k-tuple of distinct skills by a random walk (None on a dead end)."""
    chain = [rng.choice(pool)]
    while len(chain) < k:
        nxt = [s for s in pool if s not in chain and is_subtype(chain[-1].output_type, s.input_type)]
        if not nxt:
            return None
        chain.append(rng.choice(nxt))
    return tuple(chain)


def _draw_tuple(pool: Sequence[Skill], k: int, mode: str, split: str, seed: int, rng: random.Random,
                rule: str = "per_k") -> tuple[Skill, ...]:
    names, groups = [s.name for s in pool], family_groups(pool)
    for _ in range(MAX_DRAWS):
        if mode in ("chain", "direct"):
            tup = _draw_chain(pool, k, rng)
        else:
            tup = tuple(rng.sample(list(pool), k))
        if tup is not None and split_of([s.name for s in tup], names, seed, rule, groups) == split:
            return tup
    raise CatalogError(
        f"found no {split} {mode} tuple of {k} skills in {MAX_DRAWS} draws; lower k or use more (chainable) skills"
    )


def _draw_inputs(tup: Sequence[Skill], mode: str, rng: random.Random) -> tuple[str, ...]:
    for _ in range(MAX_DRAWS):
        try:
            if mode == "conjunction":
                inputs = tuple(s.sample_input(rng) for s in tup)
                for s, x in zip(tup, inputs):
                    s.apply(x)
            else:
                inputs = (tup[0].sample_input(rng),)
                chain_values(tup, inputs[0])
            return inputs
        except (ValueError, KeyError, IndexError):
            continue  # an intermediate value outside a later skill's domain: draw another input
    raise CatalogError(f"no valid input found for chain {'+'.join(s.name for s in tup)}; fix the skills' domains")


def _broken_answers(tup: Sequence[Skill], inputs: Sequence[str], mode: str, gold: Rendering, rng: random.Random, n: int) -> list[str]:
    """Wrong answers where exactly one skill is broken (later chain steps applied to the wrong value)."""
    set_name, out = tup[0].skill_set, []
    for attempt in range(4 * n):
        j = attempt % len(tup) if attempt >= len(tup) else rng.randrange(len(tup))
        x_j = inputs[j] if mode == "conjunction" else (inputs[0] if j == 0 else chain_values(tup[:j], inputs[0])[-1])
        wrong = distractors(tup[j], x_j, rng, 1)
        if not wrong:
            continue
        parts = list(gold.part_answers) if mode != "direct" else list(chain_values(tup, inputs[0]))
        parts[j] = wrong[0]
        if mode in ("chain", "direct", "single"):
            try:
                for i in range(j + 1, len(tup)):
                    parts[i] = tup[i].apply(parts[i - 1])
            except (ValueError, KeyError, IndexError):
                continue
        text = answer_text(set_name, mode, parts[-1:] if mode == "direct" else parts)
        if text != gold.answer and text not in out:
            out.append(text)
        if len(out) == n:
            break
    return out


def _exemplars(spec: CompositionSpec, pool: Sequence[Skill], k: int, mode: str) -> str:
    """Solved exemplars shared by every item of a (k, mode) cell, drawn from seen tuples where any exist."""
    if spec.n_shots == 0:
        return ""
    rng, lay = _rng(spec.seed, "shots", k, mode), layout(spec.skill_set)
    shots = []
    for _ in range(spec.n_shots):
        split = "seen" if math.comb(len(pool), k) >= 2 else "heldout"
        tup = (rng.choice(pool),) if k == 1 else _draw_tuple(pool, k, mode, split, spec.split_seed, rng,
                                                             spec.split_rule)
        piece = render(tup, _draw_inputs(tup, mode, rng), mode, spec.template_version)
        shots.append(piece.prompt + piece.answer + lay.stop)
    return (lay.shot_joiner if spec.skill_set == "natural" else "").join(shots) + (
        lay.shot_joiner if spec.skill_set == "natural" else ""
    )


def content_id(payload: dict) -> str:
    """Stable 16-hex-digit id of a JSON-serializable payload."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def _make_item(spec: CompositionSpec, tup: tuple[Skill, ...], inputs: tuple[str, ...], mode: str, split: str,
               shots: str, index: int, rng: random.Random) -> Item:
    gold = render(tup, inputs, mode, spec.template_version)
    wrong = _broken_answers(tup, inputs, mode, gold, rng, spec.n_choices - 1)
    choices = [gold.answer, *wrong]
    rng.shuffle(choices)
    prompt = layout(spec.skill_set).prompt_prefix + shots + gold.prompt
    names = tuple(s.name for s in tup)
    payload = {"set": spec.skill_set, "skills": names, "mode": mode, "inputs": inputs, "prompt": prompt,
               "answer": gold.answer, "choices": choices, "template": spec.template_version}
    return Item(content_id(payload), spec.skill_set, names, len(tup), mode, split, inputs, prompt, gold.answer,
                gold.part_answers, tuple(choices), choices.index(gold.answer), layout(spec.skill_set).stop,
                spec.n_shots, spec.template_version, spec.seed, index)


def _cells(spec: CompositionSpec, pool: Sequence[Skill]) -> Iterator[tuple[int, str, str, int]]:
    for k in spec.ks:
        if k < 1 or k > len(pool):
            raise CatalogError(f"k={k} is impossible with {len(pool)} skills; use k between 1 and {len(pool)}")
        if k == 1:
            yield 1, "single", "single", spec.single_items_per_skill * len(pool)
            continue
        for mode in spec.modes:
            for split in ("seen", "heldout"):
                if split == "seen" and math.comb(len(pool), k) < 2:
                    continue  # a single k-subset is always held out: there is no seen tuple to draw
                yield k, mode, split, spec.items_per_cell


def compose_items(spec: CompositionSpec) -> Iterator[Item]:
    """Yields every item of the spec, cell by cell, deterministically."""
    if (spec.items_per_cell < 0 or spec.single_items_per_skill < 0 or min((spec.n_shots, *spec.shots_axis)) < 0
            or spec.n_choices < 1):
        raise CatalogError("item counts, shots and choices must be non-negative (choices >= 1); fix the task file")
    pool = _pool(spec)
    if not pool:
        raise CatalogError("the skill list is empty; name at least one skill or leave it out to use all")
    for n_shots in spec.shots_axis or (spec.n_shots,):
        cell_spec = replace(spec, n_shots=n_shots)
        for k, mode, split, n in _cells(cell_spec, pool):
            shots = _exemplars(cell_spec, pool, k, mode)
            for index in range(n):  # the rng ignores the shots: every shot count asks the same queries
                rng = _rng(spec.seed, k, mode, split, index)
                tup = (pool[index % len(pool)],) if k == 1 else _draw_tuple(pool, k, mode, split, spec.split_seed, rng,
                                                                         spec.split_rule)
                yield _make_item(cell_spec, tup, _draw_inputs(tup, mode, rng), mode, split, shots, index, rng)


def item_to_dict(item: Item) -> dict:
    """A JSON-serializable dict of an item (tuples become lists)."""
    return asdict(item)
