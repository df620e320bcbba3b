"""Guessing baselines: what exact match scores when the answer ignores the input.

A skill's guess rate is the share of its most common (normalized) output over `GUESS_SAMPLES` inputs
drawn, with a fixed seed, from its own input type: the accuracy of the best constant answer (about
0.5 for parity, 0.12 for the symbolic `pmx`, about 0.001 for most symbolic maps). An item's
exact-match chance is the product over its graded parts, each guessed on its own; its
partial-credit chance is their mean. For a chain, later parts see other skills' outputs rather
than their own input type, so there the baseline is an approximation.
"""
from __future__ import annotations

import functools
import math
import random
from collections import Counter

from skill_catalog.compose import Item
from skill_catalog.grading import part_skills
from skill_catalog.skill import get_skill

GUESS_SAMPLES = 4000
"""Inputs drawn per skill (sampling error of a rate g: about sqrt(g (1 - g) / 4000), at most 0.008)."""


@functools.lru_cache(maxsize=None)
def guess_rate(skill_set: str, name: str) -> float:
    """Share of the most common normalized output of skill `name` over `GUESS_SAMPLES` seeded inputs."""
    skill = get_skill(skill_set, name)
    rng = random.Random(f"guess-rate:{skill_set}:{name}")  # a str seed is hashed with SHA-512: stable everywhere
    outputs = Counter(skill.normalize(skill.apply(skill.sample_input(rng))) for _ in range(GUESS_SAMPLES))
    return outputs.most_common(1)[0][1] / GUESS_SAMPLES


def item_chance(item: Item) -> tuple[float, float]:
    """(exact-match chance, partial-credit chance) of an item under part-by-part constant guessing."""
    rates = [guess_rate(item.skill_set, name) for name in part_skills(item)]
    return math.prod(rates), sum(rates) / len(rates)
