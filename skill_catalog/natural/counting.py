"""Counting skills of the `natural` set: how many letters of some kind a word has.

Vowels are exactly a, e, i, o, u (y counts as a consonant), as each instruction says.
"""
from __future__ import annotations

import random

from skill_catalog.natural import types as _types  # noqa: F401  (registers the value types first)
from skill_catalog.natural.checks import near_numbers, normalize_number
from skill_catalog.natural.strings import VOWELS
from skill_catalog.skill import skill

_KW = dict(skill_set="natural", family="counting", input_type="word", normalize=normalize_number)


def _near_counts(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    return near_numbers(gold, rng)


@skill(instruction="Count the letters in {x}.", output_type="positive", distractors=_near_counts, **_KW)
def letter_count(x: str) -> str:
    """Number of letters (house -> 5)."""
    return str(len(x))


@skill(instruction="Count the vowels (a, e, i, o, u) in {x}.", output_type="number", distractors=_near_counts, **_KW)
def vowel_count(x: str) -> str:
    """Number of vowels a, e, i, o, u, with repeats (house -> 3)."""
    return str(sum(ch in VOWELS for ch in x.lower()))


@skill(
    instruction="Count the consonants (letters other than a, e, i, o, u) in {x}.", output_type="number",
    distractors=_near_counts, **_KW,
)
def consonant_count(x: str) -> str:
    """Number of letters that are not a, e, i, o, u, with repeats (happy -> 4)."""
    return str(sum(ch not in VOWELS for ch in x.lower()))


@skill(
    instruction="Count the different letters in {x}, counting a repeated letter once.", output_type="positive",
    distractors=_near_counts, **_KW,
)
def distinct_letter_count(x: str) -> str:
    """Number of distinct letters (apple -> 4)."""
    return str(len(set(x.lower())))
