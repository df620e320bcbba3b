"""List skills of the `natural` set, over comma-separated lists of small numbers (``"3, 8, 1"``).

Items are in 0..20 and every skill keeps them there, so `list_max` and friends return a
`small_number` that chains into `number_to_word`.
"""
from __future__ import annotations

import random

from skill_catalog.natural import types as _types  # noqa: F401  (registers the value types first)
from skill_catalog.natural.checks import (
    format_list, near_numbers, normalize_list, normalize_number, parse_list, shuffled,
)
from skill_catalog.skill import skill

_ITEM = dict(skill_set="natural", family="lists", input_type="number_list", normalize=normalize_number)
_LIST = dict(
    skill_set="natural", family="lists", input_type="number_list", output_type="number_list",
    normalize=normalize_list,
)


def _other_items(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    # Picking the wrong item of the list is the plausible error, not an arbitrary number.
    return shuffled([str(v) for v in parse_list(x)], rng)


@skill(instruction="Give the largest number in {x}.", output_type="small_number", distractors=_other_items, **_ITEM)
def list_max(x: str) -> str:
    """Largest item (3, 8, 1 -> 8)."""
    return str(max(parse_list(x)))


@skill(instruction="Give the smallest number in {x}.", output_type="small_number", distractors=_other_items, **_ITEM)
def list_min(x: str) -> str:
    """Smallest item (3, 8, 1 -> 1)."""
    return str(min(parse_list(x)))


@skill(instruction="Give the first number in {x}.", output_type="small_number", distractors=_other_items, **_ITEM)
def list_first(x: str) -> str:
    """First item (3, 8, 1 -> 3)."""
    return str(parse_list(x)[0])


@skill(instruction="Give the last number in {x}.", output_type="small_number", distractors=_other_items, **_ITEM)
def list_last(x: str) -> str:
    """Last item (3, 8, 1 -> 1)."""
    return str(parse_list(x)[-1])


def _near_totals(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    return near_numbers(gold, rng)


@skill(
    instruction="Add up the numbers in {x}.", output_type="number", distractors=_near_totals, **_ITEM,
)
def list_sum(x: str) -> str:
    """Sum of the items (3, 8, 1 -> 12)."""
    return str(sum(parse_list(x)))


@skill(
    instruction="Count the numbers in {x}.", output_type="positive", distractors=_near_totals, **_ITEM,
)
def list_length(x: str) -> str:
    """Number of items (3, 8, 1 -> 3)."""
    return str(len(parse_list(x)))


def _reorderings(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    values = parse_list(x)
    swapped = parse_list(gold)
    if len(swapped) > 1:
        swapped[0], swapped[1] = swapped[1], swapped[0]
    return shuffled([x, format_list(sorted(values, reverse=True)), format_list(swapped)], rng)


@skill(instruction="Sort the numbers in {x} from smallest to largest.", distractors=_reorderings, **_LIST)
def sort_list(x: str) -> str:
    """Items in ascending order (3, 8, 1 -> 1, 3, 8)."""
    return format_list(sorted(parse_list(x)))


@skill(instruction="Write the numbers in {x} in reverse order.", distractors=_reorderings, **_LIST)
def reverse_list(x: str) -> str:
    """Items in reverse order (3, 8, 1 -> 1, 8, 3)."""
    return format_list(parse_list(x)[::-1])
